"""Read workbench.yaml into ApiSpec objects; every error names the file, the line and the field."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workbench.spec.models import ApiSpec, TrafficSplitterSpec
from workbench.wire.errors import BadRequest

SPEC_FILENAMES = ("workbench.yaml", "workbench.yml")
DEFAULT_CLASSES = ("Predictor", "PythonPredictor")


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(BadRequest):
    """One or more problems in a spec; str() lists them one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class LoadedSpec:
    spec: ApiSpec
    project_dir: Path
    file: Path


@dataclass(frozen=True)
class LoadedSplitter:
    spec: TrafficSplitterSpec
    file: Path


@dataclass(frozen=True)
class SpecFile:
    """Everything one workbench.yaml describes."""

    file: Path
    apis: list[LoadedSpec]
    splitters: list[LoadedSplitter]


class _Lines:
    """Line numbers of mapping keys and sequence items, keyed by the id of their container."""

    def __init__(self) -> None:
        self.by_container: dict[int, dict[Any, int]] = {}
        self.of_container: dict[int, int] = {}


def _loader_class(lines: _Lines) -> type[yaml.SafeLoader]:
    class LineLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        keys: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.MarkedYAMLError(
                    None, None, "a key must be a plain value", key_node.start_mark
                )
            if key in mapping:
                raise yaml.MarkedYAMLError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            mapping[key] = loader.construct_object(value_node, deep=True)
            keys[key] = key_node.start_mark.line + 1
        lines.by_container[id(mapping)] = keys
        lines.of_container[id(mapping)] = node.start_mark.line + 1
        return mapping

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> list[Any]:
        items = [loader.construct_object(child, deep=True) for child in node.value]
        lines.by_container[id(items)] = {
            index: child.start_mark.line + 1 for index, child in enumerate(node.value)
        }
        lines.of_container[id(items)] = node.start_mark.line + 1
        return items

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return LineLoader


def _line_of(data: Any, loc: tuple[Any, ...], lines: _Lines) -> int | None:
    """The line of the deepest part of `loc` that exists in the document."""
    line = lines.of_container.get(id(data))
    current = data
    for part in loc:
        keys = lines.by_container.get(id(current), {})
        if isinstance(current, dict):
            # pydantic reports aliases (e.g. "class") as they were written
            if part not in current:
                return line
            line = keys.get(part, line)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            line = keys.get(part, line)
            current = current[part]
        else:
            return line
    return line


def _describe(error: Any) -> str:
    kind = error["type"]
    message = str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see the allowed fields in the README)"
    if kind == "literal_error":
        return message.replace("Input should be", "must be")
    if kind == "missing":
        return "required field is missing"
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return message


def _allowed_fields(loc: tuple[Any, ...], root: Any = ApiSpec) -> str:
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return ""
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if hasattr(c, "model_fields")), None)
        if model is None:
            return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    return "; allowed: " + ", ".join(names)


def _find_spec_file(path: Path) -> Path:
    if path.is_dir():
        for name in SPEC_FILENAMES:
            if (path / name).is_file():
                return path / name
        raise SpecError([Problem(path, None, "", "no workbench.yaml in this folder")])
    if not path.exists():
        raise SpecError([Problem(path, None, "", "no such file or folder")])
    return path


def _check_predictor(spec: ApiSpec, project: Path, file: Path, line: int | None) -> list[Problem]:
    if spec.predictor is None:
        return []
    predictor_file = project / spec.predictor.path
    if not predictor_file.is_file():
        return [Problem(file, line, "predictor.path", f"{spec.predictor.path} not found in {project}")]
    try:
        tree = ast.parse(predictor_file.read_text(encoding="utf-8"), filename=str(predictor_file))
    except SyntaxError as error:
        return [Problem(predictor_file, error.lineno, "", f"Python syntax error: {error.msg}")]
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    wanted, path = spec.predictor.class_name, spec.predictor.path
    if wanted is not None:
        if wanted not in classes:
            found = ", ".join(sorted(classes)) or "none"
            return [Problem(file, line, "predictor.class",
                            f"class {wanted} not found in {path} (classes there: {found})")]
        return []
    if not any(name in classes for name in DEFAULT_CLASSES):
        return [Problem(file, line, "predictor.class",
                        f"{path} defines neither Predictor nor PythonPredictor; "
                        "name the class with predictor.class")]
    return []


def _check_container(spec: ApiSpec, project: Path, file: Path, line: int | None) -> list[Problem]:
    container = spec.container
    if container is None or container.build is None:
        return []
    dockerfile = project / container.build
    if not dockerfile.is_file():
        return [Problem(file, line, "container.build",
                        f"Dockerfile {container.build} not found in {project}")]
    if not dockerfile.resolve().is_relative_to(project.resolve()):
        return [Problem(file, line, "container.build",
                        f"{container.build} must be inside the project folder {project}")]
    return []


def _check_files(spec: ApiSpec, project: Path, file: Path, line: int | None) -> list[Problem]:
    problems = _check_predictor(spec, project, file, line) + _check_container(spec, project, file, line)
    requirements = spec.predictor.requirements if spec.predictor is not None else None
    if requirements and not (project / requirements).is_file():
        problems.append(Problem(file, line, "predictor.requirements",
                                f"{requirements} not found in {project}"))
    if spec.image.wheelhouse and not (project / spec.image.wheelhouse).is_dir():
        problems.append(Problem(file, line, "image.wheelhouse",
                                f"folder {spec.image.wheelhouse} not found in {project}"))
    return problems


def _check_models(spec: ApiSpec, project: Path, file: Path, where: Any, lines: _Lines) -> list[Problem]:
    """A workstation folder or file named as a model's source must be there."""
    problems = []
    for index, model in enumerate(spec.model_specs):
        source = model.parsed
        if source.kind != "local":
            continue
        loc = ("model", "source") if spec.model is not None else ("models", index, "source")
        field = ".".join(str(part) for part in loc)
        path = source.local_path(project)
        line = _line_of(where, loc, lines)
        if not path.exists():
            problems.append(Problem(file, line, field, f"{source.path} not found (looked for {path})"))
        elif not (path.is_file() or path.is_dir()):
            problems.append(Problem(file, line, field, f"{path} is neither a file nor a folder"))
        elif path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
            problems.append(Problem(file, line, field, f"the folder {path} holds no files"))
        elif path == project.resolve():
            problems.append(Problem(file, line, field, "the model cannot be the whole project folder; "
                                    "put the weights in a folder of their own (e.g. ./weights)"))
    return problems


def _check_model_names(documents: list[Any], specs: list[LoadedSpec | LoadedSplitter], file: Path,
                       lines: _Lines) -> list[Problem]:
    """A model name (openai.models) is claimed by one API of the file."""
    problems: list[Problem] = []
    first: dict[str, tuple[str, int | None]] = {}
    by_name = {d.get("name"): d for d in documents if isinstance(d, dict)}
    for loaded in specs:
        openai = loaded.spec.openai
        if openai is None:
            continue
        document = by_name.get(loaded.spec.name)
        for index, model in enumerate(openai.models):
            line = _line_of(document, ("openai", "models", index), lines)
            if model in first:
                other, other_line = first[model]
                at = f" (line {other_line})" if other_line else ""
                problems.append(Problem(file, line, "openai.models", f"model {model!r} is claimed by "
                                        f"API {other}{at} already; a model name routes to one API"))
            else:
                first[model] = (loaded.spec.name, line)
    return problems


def load_specs(path: Path | str) -> list[LoadedSpec]:
    """Load every API of a workbench.yaml (a folder holding one, or the file itself)."""
    return load_spec_file(path).apis


def load_spec_file(path: Path | str) -> SpecFile:
    """Load every API and traffic splitter of a workbench.yaml."""
    file = _find_spec_file(Path(path).resolve())
    project = file.parent
    lines = _Lines()
    try:
        text = file.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_loader_class(lines))
    except UnicodeDecodeError:
        raise SpecError([Problem(file, None, "", "not a UTF-8 text file")]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "YAML syntax error"
        raise SpecError([Problem(file, mark.line + 1 if mark else None, "",
                                 f"YAML syntax error: {message}")]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem(file, None, "", f"YAML error: {error}")]) from None
    if data is None:
        raise SpecError([Problem(file, None, "", "the file is empty; describe at least one API")])
    documents = data if isinstance(data, list) else [data]
    prefix_index = isinstance(data, list)
    problems: list[Problem] = []
    loaded: list[LoadedSpec] = []
    splitters: list[LoadedSplitter] = []
    seen: dict[str, int | None] = {}
    for index, document in enumerate(documents):
        line = _line_of(data, (index,), lines) if prefix_index else lines.of_container.get(id(data))
        if not isinstance(document, dict):
            problems.append(Problem(file, line, f"[{index}]" if prefix_index else "",
                                    "each API must be a mapping with at least a name"))
            continue
        model: type[ApiSpec] | type[TrafficSplitterSpec] = (
            TrafficSplitterSpec if document.get("kind") == "traffic_splitter" else ApiSpec
        )
        try:
            spec = model.model_validate(document)
        except ValidationError as error:
            for item in error.errors():
                loc = tuple(item["loc"])
                full = ((index,) if prefix_index else ()) + loc
                field = ".".join(str(part) for part in loc) or "(api)"
                if prefix_index:
                    field = f"[{index}].{field}"
                hint = _allowed_fields(loc, model) if item["type"] == "extra_forbidden" else ""
                problems.append(Problem(file, _line_of(data, full, lines), field,
                                        _describe(item) + hint))
            continue
        api_line = _line_of(document, ("name",), lines)
        if spec.name in seen:
            problems.append(Problem(file, api_line, "name",
                                    f"API {spec.name!r} is defined twice (first on line {seen[spec.name]})"))
            continue
        seen[spec.name] = api_line
        if isinstance(spec, TrafficSplitterSpec):
            splitters.append(LoadedSplitter(spec, file))
            continue
        where = ("container", "build") if spec.container is not None else ("predictor",)
        section_line = _line_of(document, where, lines) or api_line
        problems.extend(_check_files(spec, project, file, section_line))
        problems.extend(_check_models(spec, project, file, document, lines))
        loaded.append(LoadedSpec(spec, project, file))
    problems.extend(_check_model_names(documents, [*loaded, *splitters], file, lines))
    splitter_names = {s.spec.name for s in splitters}
    for splitter in splitters:
        line = seen.get(splitter.spec.name)
        for target in splitter.spec.apis:
            if target.name in splitter_names:
                problems.append(Problem(file, line, "apis", f"{target.name} is a traffic splitter; "
                                        "a splitter routes to APIs with replicas"))
    if problems:
        raise SpecError(problems)
    return SpecFile(file, loaded, splitters)

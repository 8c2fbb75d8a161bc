"""The one check of a deploy request: the workbench.yaml it names, the APIs it picks, the state.

POST /v1/deployments reads the file here, once (the CLI sends only the path). A bad request is a
DeployInputError (400) before anything streams or changes: for a bad spec its body carries the
`file:line: field: message` problems one per entry, which the CLI prints as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.spec.loader import LoadedSpec, LoadedSplitter, SpecError, load_spec_file
from workbench.wire.control import DeployRequest
from workbench.wire.errors import BadRequest
from workbench.wire.replica import RuntimeKind

if TYPE_CHECKING:  # the CLI reads a request here before any controller (or its state) exists
    from workbench.controller.state import Store


class DeployInputError(BadRequest):
    """The request or the file it names is wrong (400); nothing changed. `body` is the JSON answer:
    `{"error": message, **extra}` (a bad spec's `problems`, an unknown API's known `apis`)."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, body={"error": message, **extra})
        self.extra = extra

    @property
    def problems(self) -> list[str]:
        return list(self.extra.get("problems", []))


@dataclass(frozen=True)
class DeployOrder:
    """A checked deploy request: what to deploy from which file, and how."""

    file: Path
    apis: list[LoadedSpec]
    splitters: list[LoadedSplitter]
    runtime: RuntimeKind | None
    offline: bool | None


def read_order(request: DeployRequest) -> DeployOrder:
    """Read the file the request names and pick its APIs; DeployInputError when either is wrong.
    Reads files only: it needs no controller state."""
    if not request.path.strip():
        raise DeployInputError("path must name a project folder or a workbench.yaml")
    try:
        spec_file = load_spec_file(request.path)
    except SpecError as error:
        raise DeployInputError(str(error), problems=[str(problem) for problem in error.problems]) from None
    except (OSError, ValueError) as error:
        raise DeployInputError(f"cannot read {request.path}: {error}") from None
    apis, splitters = spec_file.apis, spec_file.splitters
    if request.apis is not None:
        known = [a.spec.name for a in apis] + [s.spec.name for s in splitters]
        unknown = sorted(set(request.apis) - set(known))
        if unknown:
            raise DeployInputError(f"no API named {', '.join(unknown)} in {spec_file.file}", apis=known)
        apis = [a for a in apis if a.spec.name in request.apis]
        splitters = [s for s in splitters if s.spec.name in request.apis]
    return DeployOrder(spec_file.file, apis, splitters, request.runtime, request.offline)


def claimed_models(spec: dict[str, Any]) -> list[str]:
    """The model names a stored spec claims for the OpenAI front door (openai.models)."""
    openai = spec.get("openai")
    models = openai.get("models") if isinstance(openai, dict) else None
    return [m for m in models if isinstance(m, str)] if isinstance(models, list) else []


def check_models(order: DeployOrder, store: Store) -> None:
    """A model name is served by one API (or splitter) of the fleet: a deploy that claims a name
    another deployed one claims fails, naming it."""
    deploying: list[LoadedSpec | LoadedSplitter] = [*order.apis, *order.splitters]
    names = {loaded.spec.name for loaded in deploying}
    owners: dict[str, str] = {}
    for record in store.apis():
        if record.name not in names:
            for model in claimed_models(record.spec):
                owners.setdefault(model, record.name)
    for loaded in deploying:
        openai = loaded.spec.openai
        for model in openai.models if openai is not None else ():
            first = owners.get(model)
            if first is not None:
                raise DeployInputError(
                    f"{order.file}: {loaded.spec.name} claims model {model!r}, which API {first} serves "
                    f"already (openai.models); a model name routes to one API: remove it from one of "
                    f"them, or put a traffic splitter in front of both", api=first, model=model)


def check_against(order: DeployOrder, store: Store) -> None:
    """What the state allows: a name keeps its kind; a splitter routes to APIs that exist; a model
    name is claimed once."""
    check_models(order, store)
    deploying = {a.spec.name for a in order.apis}
    for loaded in order.apis:
        existing = store.get_api(loaded.spec.name)
        if existing is not None and existing.kind != "api":
            raise DeployInputError(f"{loaded.spec.name} is deployed as a traffic splitter; "
                                   "delete it first (`workbench delete`)")
    for splitter in order.splitters:
        existing = store.get_api(splitter.spec.name)
        if existing is not None and existing.kind != "traffic_splitter":
            raise DeployInputError(f"{splitter.spec.name} is deployed as an API; delete it first")
        for target in splitter.spec.apis:
            record = store.get_api(target.name)
            if target.name not in deploying and (record is None or record.kind != "api"):
                raise DeployInputError(
                    f"{order.file}: traffic splitter {splitter.spec.name} routes to {target.name}, "
                    "which is neither deployed nor in this file")

"""workbench.serving.loader: finding, importing and constructing the predictor class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workbench.serving.loader import LoadError, construct, find_class, import_file, load_predictor
from workbench.serving.predictor import PredictorHandle

from .conftest import runtime_config, write_project


def load(tmp_path: Path, code: str, **kw: Any) -> PredictorHandle:
    return load_predictor(runtime_config(write_project(tmp_path, code), **kw))


def test_predictor_class_gets_config(tmp_path: Path) -> None:
    code = """
    class Predictor:
        def __init__(self, config):
            self.config = config
        def predict(self, payload):
            return payload
    """
    handle = load(tmp_path, code, config={"k": 1})
    assert handle.instance.config == {"k": 1}  # type: ignore[attr-defined]


def test_python_predictor_fallback(tmp_path: Path) -> None:
    code = """
    class PythonPredictor:
        def predict(self, payload):
            return payload
    """
    assert type(load(tmp_path, code).instance).__name__ == "PythonPredictor"


def test_predictor_preferred_over_python_predictor(tmp_path: Path) -> None:
    code = """
    class PythonPredictor:
        def predict(self, payload): ...
    class Predictor:
        def predict(self, payload): ...
    """
    assert type(load(tmp_path, code).instance).__name__ == "Predictor"


def test_named_class_and_other_file(tmp_path: Path) -> None:
    write_project(tmp_path, "class Model:\n    def predict(self, payload):\n        return 1\n", "m.py")
    handle = load_predictor(runtime_config(tmp_path, predictor_path="m.py", predictor_class="Model"))
    assert type(handle.instance).__name__ == "Model"


def test_project_dir_is_on_sys_path(tmp_path: Path) -> None:
    write_project(tmp_path, "VALUE = 42\n", "helper_mod_for_loader_test.py")
    code = """
    import helper_mod_for_loader_test
    class Predictor:
        def predict(self, payload):
            return helper_mod_for_loader_test.VALUE
    """
    handle = load(tmp_path, code)
    assert handle.bind_predict(None, None, None)() == 42


def test_missing_class(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no class Predictor or PythonPredictor"):
        load(tmp_path, "class Other: pass\n")
    with pytest.raises(LoadError, match="no class Nope"):
        load(tmp_path, "class Other: pass\n", predictor_class="Nope")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="not found"):
        import_file(str(tmp_path / "absent.py"))


def test_class_without_predict(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no predict"):
        load(tmp_path, "class Predictor:\n    pass\n")


def test_import_error_propagates(tmp_path: Path) -> None:
    with pytest.raises(ModuleNotFoundError):
        load(tmp_path, "import no_such_module_xyz\n")


def test_init_error_propagates(tmp_path: Path) -> None:
    code = """
    class Predictor:
        def __init__(self, config):
            raise RuntimeError("weights missing")
        def predict(self, payload): ...
    """
    with pytest.raises(RuntimeError, match="weights missing"):
        load(tmp_path, code)


class NoArgs:
    def __init__(self) -> None:
        self.ok = True


class NoInit:
    pass


class OtherName:
    def __init__(self, cfg: dict[str, int]) -> None:
        self.cfg = cfg


class Kwargs:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


def test_construct_variants() -> None:
    assert construct(NoArgs, {"a": 1}).ok  # type: ignore[attr-defined]
    assert isinstance(construct(NoInit, {"a": 1}), NoInit)
    assert construct(OtherName, {"a": 1}).cfg == {"a": 1}  # type: ignore[attr-defined]
    assert construct(Kwargs, {"a": 1}).kwargs == {"config": {"a": 1}}  # type: ignore[attr-defined]


def test_find_class_ignores_non_classes(tmp_path: Path) -> None:
    write_project(tmp_path, "Predictor = 3\nclass PythonPredictor: pass\n", "x.py")
    module = import_file(str(tmp_path / "x.py"))
    assert find_class(module, None).__name__ == "PythonPredictor"

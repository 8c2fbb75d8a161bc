"""controller/intake.py: the one check of a deploy request — the file, the APIs picked, the state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.controller.helpers import make_project
from workbench.controller.intake import DeployInputError, check_against, read_order
from workbench.controller.state import ApiRecord, Store
from workbench.spec.loader import SpecError, load_spec_file
from workbench.wire.control import DeployRequest

TWO = ("- name: blue\n  runtime: process\n- name: green\n  runtime: process\n"
       "- kind: traffic_splitter\n  name: split\n"
       "  apis: [{name: blue, weight: 50}, {name: green, weight: 50}]\n")


def refused(request: DeployRequest) -> DeployInputError:
    with pytest.raises(DeployInputError) as caught:
        read_order(request)
    assert caught.value.status == 400
    return caught.value


def test_a_bad_spec_is_refused_with_its_problems(tmp_path: Path) -> None:
    folder = make_project(tmp_path, "name: Bad_Name\nreplicas: -1\nserving:\n  max_concurency: 2\n")
    error = refused(DeployRequest(path=str(folder)))
    with pytest.raises(SpecError) as loader:
        load_spec_file(folder)
    expected = [str(problem) for problem in loader.value.problems]
    assert len(expected) == 3
    assert error.problems == expected and str(error) == "\n".join(expected)
    assert error.body == {"error": "\n".join(expected), "problems": expected}
    assert any(p.startswith(f"{folder / 'workbench.yaml'}:4: serving.max_concurency: unknown field")
               for p in expected)


def test_a_missing_or_empty_path_is_refused(tmp_path: Path) -> None:
    error = refused(DeployRequest(path=str(tmp_path / "nowhere")))
    assert error.problems == [f"{tmp_path / 'nowhere'}: no such file or folder"]
    empty = refused(DeployRequest(path=str(tmp_path)))
    assert empty.problems == [f"{tmp_path}: no workbench.yaml in this folder"]
    blank = refused(DeployRequest(path="  "))
    assert str(blank) == "path must name a project folder or a workbench.yaml" and blank.problems == []


def test_unknown_api_names_are_listed_sorted_with_the_known_ones(tmp_path: Path) -> None:
    folder = make_project(tmp_path, TWO)
    error = refused(DeployRequest(path=str(folder), apis=["zeta", "blue", "alpha"]))
    assert str(error) == f"no API named alpha, zeta in {folder / 'workbench.yaml'}"
    assert error.body == {"error": str(error), "apis": ["blue", "green", "split"]} and error.problems == []


def test_the_request_picks_apis_and_keeps_its_settings(tmp_path: Path) -> None:
    folder = make_project(tmp_path, TWO)
    order = read_order(DeployRequest(path=str(folder / "workbench.yaml"), apis=["green"], runtime="process",
                                     offline=True))
    assert order.file == folder / "workbench.yaml"
    assert [a.spec.name for a in order.apis] == ["green"] and order.splitters == []
    assert (order.runtime, order.offline) == ("process", True)
    whole = read_order(DeployRequest(path=str(folder)))
    assert [a.spec.name for a in whole.apis] == ["blue", "green"]
    assert [s.spec.name for s in whole.splitters] == ["split"]


def _record(name: str, kind: str) -> ApiRecord:
    now = time.time()
    return ApiRecord(name=name, kind=kind, spec={"name": name}, version=1, created_at=now, updated_at=now)


def test_the_state_keeps_kinds_and_splitter_targets(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    folder = make_project(tmp_path, TWO)
    check_against(read_order(DeployRequest(path=str(folder))), store)  # targets in this file: fine
    only_split = read_order(DeployRequest(path=str(folder), apis=["split"]))
    with pytest.raises(DeployInputError, match="routes to blue, which is neither deployed nor in this file"):
        check_against(only_split, store)
    store.put_api(_record("blue", "api"))
    store.put_api(_record("green", "api"))
    check_against(only_split, store)  # both deployed now
    store.put_api(_record("split", "api"))
    with pytest.raises(DeployInputError, match="split is deployed as an API; delete it first"):
        check_against(only_split, store)
    store.put_api(_record("green", "traffic_splitter"))
    with pytest.raises(DeployInputError, match="green is deployed as a traffic splitter"):
        check_against(read_order(DeployRequest(path=str(folder), apis=["green"])), store)


def test_a_model_name_claimed_by_another_api_fails_naming_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.put_api(ApiRecord(name="llama", kind="api", spec={"name": "llama", "openai": {"models": ["m1"]}},
                            project_dir=None, created_at=time.time()))
    folder = make_project(tmp_path, "- name: blue\n  runtime: process\n  openai: {models: [m0, m1]}\n"
                          "- name: llama\n  runtime: process\n  openai: {models: [m2]}\n")
    with pytest.raises(DeployInputError) as caught:
        check_against(read_order(DeployRequest(path=str(folder), apis=["blue"])), store)
    assert "blue claims model 'm1', which API llama serves already" in str(caught.value)
    assert caught.value.body["api"] == "llama"
    # llama itself, redeployed with other models in the same deploy, frees m1: fine
    check_against(read_order(DeployRequest(path=str(folder))), store)
    # a traffic splitter may claim it when the API gives it up
    split = make_project(tmp_path / "split", "- name: llama\n  runtime: process\n"
                         "- kind: traffic_splitter\n  name: canary\n  openai: {models: [m1]}\n"
                         "  apis: [{name: llama, weight: 100}]\n")
    check_against(read_order(DeployRequest(path=str(split))), store)

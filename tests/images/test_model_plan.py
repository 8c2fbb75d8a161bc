"""Model weights and an API's artifact: a workstation model inside the project folder stays out of
the build context, and the model's version is part of the content hash (a new revision rolls out
like a new image, the same weights keep the artifact)."""

from __future__ import annotations

from pathlib import Path

from tests.controller.helpers import echo_project
from workbench.controller.build import plan_artifact
from workbench.spec import load_specs
from workbench.weights.resolve import resolve


def test_weights_stay_out_of_the_context_and_their_version_is_in_the_hash(tmp_path: Path) -> None:
    folder = echo_project(tmp_path, yaml="name: echo\nruntime: process\nmodel: {source: ./weights}\n")
    (folder / "weights" / "sub").mkdir(parents=True)
    (folder / "weights" / "model.bin").write_bytes(b"w" * 4096)
    (folder / "weights" / "sub" / "extra.bin").write_bytes(b"x")
    (folder / "weightsfile.txt").write_text("not the model: a file whose name starts the same")
    [loaded] = load_specs(folder)
    models = [resolve(m, folder) for m in loaded.spec.model_specs]
    plan = plan_artifact(loaded, "process", None, models)
    names = [entry.name for entry in plan.entries]
    assert "project/predictor.py" in names and "project/weightsfile.txt" in names
    assert not [n for n in names if n.startswith("project/weights/")]

    again = plan_artifact(load_specs(folder)[0], "process", None,
                          [resolve(m, folder) for m in loaded.spec.model_specs])
    assert again.image_hash == plan.image_hash  # the same weights: the same artifact
    (folder / "weights" / "model.bin").write_bytes(b"v" * 4096)  # a new version of the weights
    changed = plan_artifact(load_specs(folder)[0], "process", None,
                            [resolve(m, folder) for m in loaded.spec.model_specs])
    assert changed.image_hash != plan.image_hash
    assert [e.name for e in changed.entries] == names  # the context itself is unchanged
    without = plan_artifact(load_specs(folder)[0], "process", None, [])
    assert without.image_hash not in (plan.image_hash, changed.image_hash)

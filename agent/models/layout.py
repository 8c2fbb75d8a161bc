"""Where a model version's files are inside its tree, for each kind of source.

A workstation folder or a URL: the files at their paths. A hub repo: huggingface_hub's own cache
layout, `hub/models--org--name/{blobs/<etag>, snapshots/<commit>/<path>, refs/<revision>}`, so that
with HF_HOME at the tree and HF_HUB_OFFLINE=1 `from_pretrained("org/name")` finds it offline.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from workbench.wire.model_cache import MODEL_DIR_ENV, ModelMount, model_dir_env

HF_HOME_ENV = "HF_HOME"
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"


def hub_folder(repo: str) -> PurePosixPath:
    """hub/models--org--name (huggingface_hub's `repo_folder_name`)."""
    return PurePosixPath("hub") / ("models--" + repo.replace("/", "--"))


def files_dir(mount: ModelMount) -> PurePosixPath:
    """The folder of the model's own files, relative to its tree."""
    if mount.kind == "hf":
        assert mount.repo is not None and mount.commit is not None
        return hub_folder(mount.repo) / "snapshots" / mount.commit
    return PurePosixPath(".")


def replica_env(mounts: list[ModelMount], base_of: dict[str, str]) -> dict[str, str]:
    """What a replica's environment says about its models: WORKBENCH_MODEL_DIR (the first's files),
    WORKBENCH_MODEL_DIR_<NAME> for each, and for the first hub repo HF_HOME and HF_HUB_OFFLINE=1.
    `base_of` maps a version id to where the replica sees its tree (a mount, or a host path)."""
    env: dict[str, str] = {}
    for index, mount in enumerate(mounts):
        base = PurePosixPath(base_of[mount.id])
        where = str(base / files_dir(mount)) if mount.kind == "hf" else str(base)
        env[model_dir_env(mount.name)] = where
        if index == 0:
            env[MODEL_DIR_ENV] = where
        if mount.kind == "hf" and HF_HOME_ENV not in env:
            env[HF_HOME_ENV] = str(base)
            env[HF_OFFLINE_ENV] = "1"
    return env

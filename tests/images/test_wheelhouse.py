from pathlib import Path

import pytest

from workbench.images.errors import WheelhouseError
from workbench.images.wheelhouse import WheelTarget, cache_key, cache_root, resolve_wheelhouse


def test_default_target_platforms() -> None:
    target = WheelTarget()
    assert target.abi == "cp311"
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert platforms[-1] == "manylinux2014_x86_64"
    args = target.pip_args()
    assert args[:5] == ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
    assert args.count("--platform") == len(platforms)


def test_arm_and_other_pythons() -> None:
    target = WheelTarget(python_version="3.12", arch="arm64")
    assert target.arch == "aarch64" and target.abi == "cp312"
    assert all(p.endswith("_aarch64") for p in target.platforms())
    with pytest.raises(WheelhouseError, match="architecture"):
        WheelTarget(arch="sparc")
    with pytest.raises(WheelhouseError, match="python version"):
        WheelTarget(python_version="three")
    with pytest.raises(WheelhouseError, match="glibc"):
        WheelTarget(glibc="2.5")


def test_cache_root_honours_workbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("WORKBENCH_HOME")
    assert cache_root().name == "workbench"


def test_cache_key_depends_on_inputs(tmp_path: Path) -> None:
    reqs = tmp_path / "r.txt"
    reqs.write_text("idna\n")
    key = cache_key(["a==1"], [reqs], WheelTarget())
    assert key == cache_key(["a==1"], [reqs], WheelTarget())
    assert key != cache_key(["a==2"], [reqs], WheelTarget())
    assert key != cache_key(["a==1"], [reqs], WheelTarget(arch="aarch64"))
    reqs.write_text("idna==3.7\n")
    assert key != cache_key(["a==1"], [reqs], WheelTarget())


def test_real_resolve_then_cache_hit(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("idna\n")
    lines: list[str] = []
    folder = resolve_wheelhouse(["pydantic-core"], [reqs], cache_dir=tmp_path / "cache",
                                progress=lines.append)
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    assert any(w.startswith("idna-") for w in wheels)
    assert any(w.startswith("pydantic_core-") and "cp311" in w and "x86_64" in w for w in wheels)
    assert any("Saved" in line or "idna" in line for line in lines)
    again: list[str] = []
    assert resolve_wheelhouse(["pydantic-core"], [reqs], cache_dir=tmp_path / "cache",
                              progress=again.append) == folder
    assert len(again) == 1 and "cache hit" in again[0]
    assert [p.name for p in (tmp_path / "cache" / "wheelhouses").iterdir()] == [folder.name]


def test_missing_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(WheelhouseError, match="pip could not get workbench-no-such-package-zz"):
        resolve_wheelhouse(["workbench-no-such-package-zz==1.0"], cache_dir=tmp_path)
    leftovers = list((tmp_path / "wheelhouses").iterdir())
    assert leftovers == []  # the staging folder is gone

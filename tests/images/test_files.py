import os
from pathlib import Path

import pytest

from workbench.images.errors import ContextError
from workbench.images.files import Entry, project_files, walk_files


def test_walk_is_sorted_and_follows_only_file_links(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.py").write_text("z")
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    os.symlink(tmp_path / "a.py", tmp_path / "link.py")
    os.symlink(tmp_path / "missing", tmp_path / "broken.py")
    os.symlink(tmp_path / "b", tmp_path / "loop")
    entries = walk_files(tmp_path, "project")
    assert [e.name for e in entries] == ["project/a.py", "project/b/z.py", "project/link.py",
                                         "project/run.sh"]
    by_name = {e.name: e for e in entries}
    assert by_name["project/run.sh"].mode == 0o755
    assert by_name["project/a.py"].mode == 0o644
    assert by_name["project/link.py"].read() == b"a"


def test_project_files_skip_folders(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "x.whl").write_text("w")
    (tmp_path / "p.py").write_text("p")
    assert [e.name for e in project_files(tmp_path, frozenset({"wheels"}))] == ["project/p.py"]


def test_entry_digest_matches_for_file_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"same")
    assert Entry("a", source=tmp_path / "f").digest() == Entry("a", data=b"same").digest()


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="not a folder"):
        walk_files(tmp_path / "nope", "project")

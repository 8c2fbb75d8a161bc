import os
import tarfile
from pathlib import Path

import pytest

from workbench.images.archive import FIXED_MTIME, write_tar_gz
from workbench.images.errors import ContextChanged
from workbench.images.files import Entry


def test_archive_is_deterministic_and_normalised(tmp_path: Path) -> None:
    source = tmp_path / "src.py"
    source.write_text("print(1)\n")
    entries = [Entry("b/c/src.py", source=source), Entry("a.txt", data=b"hello", executable=True)]
    one, two = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    size = write_tar_gz(entries, one)
    os.utime(source, (0, 1234567))
    write_tar_gz(list(reversed(entries)), two)
    assert size == one.stat().st_size
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a.txt", "b", "b/c", "b/c/src.py"]
        assert all(m.mtime == FIXED_MTIME and m.uid == 0 and m.gid == 0 for m in members)
        assert members[0].mode == 0o755 and members[3].mode == 0o644 and members[1].isdir()
        extracted = tar.extractfile("b/c/src.py")
        assert extracted is not None and extracted.read() == b"print(1)\n"


def test_files_are_checked_against_their_planned_digests(tmp_path: Path) -> None:
    source = tmp_path / "src.py"
    source.write_text("print(1)\n")
    unplanned = tmp_path / "extra.txt"
    unplanned.write_text("resolved later\n")
    entries = [Entry("src.py", source=source), Entry("extra.txt", source=unplanned)]
    planned = {"src.py": entries[0].digest()}
    write_tar_gz(entries, tmp_path / "ok.tar.gz", planned)  # as planned; unplanned files pass
    unplanned.write_text("anything\n")
    write_tar_gz(entries, tmp_path / "ok.tar.gz", planned)
    source.write_text("print(2)\n")
    with pytest.raises(ContextChanged, match=r"src\.py changed since the build was planned"):
        write_tar_gz(entries, tmp_path / "changed.tar.gz", planned)
    source.unlink()
    with pytest.raises(ContextChanged, match=r"src\.py changed or is gone since the build was planned"):
        write_tar_gz(entries, tmp_path / "gone.tar.gz", planned)

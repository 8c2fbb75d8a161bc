import os
import tarfile
from pathlib import Path

from workbench.images.archive import FIXED_MTIME, write_tar_gz
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

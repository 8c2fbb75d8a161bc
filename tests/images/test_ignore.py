from pathlib import Path

from workbench.images.ignore import IgnoreRules, Pattern


def test_pattern_parsing_skips_comments_and_blanks() -> None:
    assert Pattern.parse("# comment") is None
    assert Pattern.parse("   ") is None
    assert Pattern.parse("!keep.txt") == Pattern("keep.txt", negated=True)
    assert Pattern.parse("data/") == Pattern("data", dir_only=True)
    assert Pattern.parse("./models/*.bin") == Pattern("models/*.bin")


def test_defaults_leave_out_caches_and_vcs() -> None:
    rules = IgnoreRules()
    for folder in (".git", "__pycache__", ".venv", "venv", "node_modules", "sub/__pycache__"):
        assert rules.ignored(folder, True)
    assert rules.ignored("pkg/mod.pyc", False)
    assert not rules.ignored("predictor.py", False)
    assert not rules.ignored("venv", False)  # a *file* named venv stays


def test_user_patterns(tmp_path: Path) -> None:
    (tmp_path / ".workbenchignore").write_text("*.ckpt\ndata/\nnotes/*.md\n!keep.ckpt\n")
    rules = IgnoreRules.for_project(tmp_path)
    assert rules.ignored("model.ckpt", False)
    assert rules.ignored("deep/down/model.ckpt", False)
    assert not rules.ignored("keep.ckpt", False)
    assert rules.ignored("data", True)
    assert not rules.ignored("data", False)
    assert rules.ignored("notes/a.md", False)
    assert not rules.ignored("a.md", False)


def test_dockerignore_is_read_too(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("secrets\n")
    assert IgnoreRules.for_project(tmp_path).ignored("secrets", True)

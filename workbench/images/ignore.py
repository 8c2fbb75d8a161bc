"""Which project files stay out of a build context (defaults + .workbenchignore/.dockerignore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

IGNORE_FILES = (".workbenchignore", ".dockerignore")
DEFAULT_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
})
DEFAULT_FILES = ("*.pyc", "*.pyo", ".DS_Store")


@dataclass(frozen=True)
class Pattern:
    """One fnmatch pattern: with a '/' it matches the relative path, else any name in it."""

    glob: str
    dir_only: bool = False
    negated: bool = False

    @classmethod
    def parse(cls, line: str) -> Pattern | None:
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        negated = text.startswith("!")
        text = text.lstrip("!").strip()
        dir_only = text.endswith("/")
        text = text.strip("/")
        if text.startswith("./"):
            text = text[2:]
        return cls(text, dir_only, negated) if text else None

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if "/" in self.glob:
            return fnmatchcase(rel, self.glob) or fnmatchcase(rel, self.glob + "/*")
        return fnmatchcase(rel.rsplit("/", 1)[-1], self.glob)


@dataclass
class IgnoreRules:
    """Defaults plus user patterns; the last matching user pattern wins (`!` re-includes)."""

    patterns: list[Pattern] = field(default_factory=list)

    @classmethod
    def for_project(cls, root: Path) -> IgnoreRules:
        patterns: list[Pattern] = []
        for name in IGNORE_FILES:
            path = root / name
            if path.is_file():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    pattern = Pattern.parse(line)
                    if pattern is not None:
                        patterns.append(pattern)
        return cls(patterns)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether the project-relative posix path `rel` stays out of the context."""
        name = rel.rsplit("/", 1)[-1]
        if is_dir and name in DEFAULT_DIRS:
            return True
        result = not is_dir and any(fnmatchcase(name, glob) for glob in DEFAULT_FILES)
        for pattern in self.patterns:
            if pattern.matches(rel, is_dir):
                result = not pattern.negated
        return result

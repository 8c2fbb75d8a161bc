"""The training text: the body of a Project Gutenberg eBook, its paragraphs unwrapped."""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "data" / "pg11.txt"
_START = re.compile(r"^\*\*\* START OF TH(?:E|IS) PROJECT GUTENBERG EBOOK.*\*\*\*$", re.MULTILINE)
_END = re.compile(r"^\*\*\* END OF TH(?:E|IS) PROJECT GUTENBERG EBOOK.*\*\*\*$", re.MULTILINE)


def book_text(path: Path = CORPUS) -> str:
    """The book between Project Gutenberg's START and END lines (its header and licence stay in
    the file, out of the training data), hard-wrapped lines joined into one line per paragraph."""
    raw = path.read_text(encoding="utf-8-sig")
    start, end = _START.search(raw), _END.search(raw)
    if start is None or end is None or end.start() < start.end():
        raise ValueError(f"{path} has no '*** START OF ... ***' / '*** END OF ... ***' lines of a "
                         "Project Gutenberg eBook")
    body = raw[start.end():end.start()].replace("[Illustration]", "")
    paragraphs = (" ".join(line.strip() for line in block.splitlines() if line.strip())
                  for block in re.split(r"\n\s*\n", body))
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph) + "\n"

"""Writes one benchmark's section of docs/benchmarks.md, keeping every other section as it is."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, title: str, section: str) -> None:
    """Replaces the section that starts with the heading `title` (or appends it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(title + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        tail = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + tail if tail else "")
    path.write_text(text.rstrip("\n") + "\n")

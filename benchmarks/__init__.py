"""Reproducible benchmarks; each package's ``__main__`` runs one and records it in its RESULTS.md."""

from __future__ import annotations

from pathlib import Path


def replace_results(results: Path, title: str, section: str) -> None:
    """Write ``section`` (which starts with "## Results") in place of the file's results, keeping what precedes them."""
    text = results.read_text() if results.exists() else f"# {title}\n\n"
    head = text.split("## Results", 1)[0].rstrip() + "\n\n"
    results.write_text(head + section)

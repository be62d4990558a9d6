"""Every Python example in docs/*.md runs as written (blocks preceded by `<!-- no-run -->` are skipped)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    for page in sorted(DOCS.glob("**/*.md")):
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            if not match.group(1):
                line = text[: match.start()].count("\n") + 1
                blocks.append((f"{page.relative_to(DOCS)}:{line}", match.group(2)))
    return blocks


def test_docs_have_runnable_examples() -> None:
    # GIVEN the docs folder THEN there are examples to run (a moved folder would silently test nothing)
    assert any(where.startswith("custom-processors.md:") for where, _ in _blocks())


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[where for where, _ in _blocks()])
def test_docs_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the example as a script, run from the repository root
    monkeypatch.chdir(DOCS.parent)
    script = tmp_path / (re.sub(r"\W", "_", where) + ".py")
    script.write_text(code)

    # WHEN it runs THEN it does not raise
    runpy.run_path(str(script), run_name="__main__")

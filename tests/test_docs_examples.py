"""Every Python example in README.md and docs/**/*.md runs as written.

Blocks preceded by `<!-- no-run -->` are skipped (the one that needs a real Sentry DSN).
"""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            if not match.group(1):
                line = text[: match.start()].count("\n") + 1
                blocks.append((f"{page.relative_to(REPO)}:{line}", match.group(2)))
    return blocks


def test_the_pages_have_examples_to_run() -> None:
    # GIVEN / WHEN the examples are collected THEN the README and the docs both contribute
    where = {location.split(":")[0] for location, _ in _blocks()}
    assert "README.md" in where
    assert any(page.startswith("docs/") for page in where)


@pytest.mark.parametrize(("location", "code"), [pytest.param(*block, id=block[0]) for block in _blocks()])
def test_example_runs(
    location: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the example as a script, run from the repository root
    monkeypatch.chdir(REPO)
    script = tmp_path / (re.sub(r"\W", "_", location) + ".py")
    script.write_text(code)

    # WHEN it runs THEN it does not raise (environment variables it sets, as a template would, end with it)
    with mock.patch.dict(os.environ):
        runpy.run_path(str(script), run_name="__main__")

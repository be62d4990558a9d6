"""Every Python example in README.md runs as written (blocks preceded by `<!-- no-run -->` are skipped)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [
        (text[: match.start()].count("\n") + 1, match.group(2)) for match in _BLOCK.finditer(text) if not match.group(1)
    ]


@pytest.mark.parametrize(
    ("line", "code"), _blocks(), ids=lambda value: f"line{value}" if isinstance(value, int) else ""
)
def test_readme_example_runs(
    line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the example as a script, run from the repository root
    monkeypatch.chdir(README.parent)
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code)

    # WHEN it runs THEN it does not raise
    runpy.run_path(str(script), run_name="__main__")

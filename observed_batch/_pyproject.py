"""The ``[tool.observed_batch]`` section of ``pyproject.toml`` (or the file ``OBSERVED_BATCH_PYPROJECT``
names), read once per path: configuration's lowest-priority source."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from observed_batch.errors import ConfigError

__all__ = ["pyproject_section", "read_pyproject"]


def pyproject_section(path: str | None) -> dict[str, Any]:
    """The section of ``path`` (default: ``pyproject.toml`` in the working directory), ``{}`` without one."""
    return read_pyproject(str(Path(path or "pyproject.toml").resolve()))


@lru_cache(maxsize=4)
def read_pyproject(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        return {}
    # Imported only now: Lambda packages rarely ship a pyproject.toml, so most cold starts skip it.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        document = tomllib.loads(content.decode())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    section = document.get("tool", {}).get("observed_batch", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.observed_batch] in {path} must be a table")
    return section

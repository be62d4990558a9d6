"""``CliRunner`` keeping stdout and stderr apart on every click the project supports.

click 8.2 always captures them apart (``output`` is both, interleaved); 8.1 mixes them unless asked
with ``mix_stderr=False`` (a parameter 8.2 removed), and then its ``output`` is stdout alone: tests
read an error line from ``stderr``, never from ``output``.
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

__all__ = ["cli_runner"]


def cli_runner(**kwargs: Any) -> CliRunner:
    try:
        return CliRunner(mix_stderr=False, **kwargs)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # click >= 8.2: always apart
        return CliRunner(**kwargs)

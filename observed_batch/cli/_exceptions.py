"""What ``observed-batch invoke`` reports about an exception: a one-line summary for stderr and a dict
for the report (type, message, frames innermost last, full traceback), with each record's exception
when Powertools raised ``BatchProcessingError`` because every record failed."""

from __future__ import annotations

import os
import traceback
from types import TracebackType
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from observed_batch.tracebacks import format_exception, safe_str

__all__ = ["describe", "exception_report"]

_MAX_SUMMARY_CHARS = 300
#: Frames of this package (the CLI calling the handler) are not the user's: left out of the report.
_CLI_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def _one_line(text: str) -> str:
    return text if len(text) <= _MAX_SUMMARY_CHARS else text[: _MAX_SUMMARY_CHARS - 3] + "..."


def _message(exc: BaseException) -> str:
    # BatchProcessingError's str() appends every record's traceback; its own message is ``msg``.
    if isinstance(exc, BatchProcessingError):
        return str(exc.msg)
    return safe_str(exc)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    if isinstance(exc, BatchProcessingError) and exc.child_exceptions:
        count = len(exc.child_exceptions)
        return f"BatchProcessingError: all {count} records failed (each record's exception is in the report)"
    message = _message(exc).strip().splitlines()
    return _one_line(f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__)


def _relative(path: str) -> str:
    """Paths under the current directory relative to it, as a reader typed them."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    return [
        {"file": _relative(frame.filename), "line": frame.lineno, "function": frame.name, "code": frame.line or ""}
        for frame in traceback.extract_tb(tb)
    ]


def _users(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its outermost frames in the CLI itself."""
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _CLI_DIRECTORY:
        tb = tb.tb_next
    return tb


def _single(exc: BaseException, tb: TracebackType | None) -> dict[str, Any]:
    tb = _users(tb)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return {
        "type": type(exc).__name__,
        "message": _message(exc),
        "frames": _frames(tb),
        "cause": describe(cause) if cause is not None else None,
        "traceback": format_exception(exc, tb),
    }


def exception_report(exc: BaseException) -> dict[str, Any]:
    """The report's ``error``: ``type``, ``message``, ``summary``, ``frames``, ``cause``, ``traceback``,
    and ``record_exceptions`` (a list of the same without ``summary``) for ``BatchProcessingError``."""
    report = _single(exc, exc.__traceback__)
    report["summary"] = describe(exc)
    if isinstance(exc, BatchProcessingError) and exc.child_exceptions:
        report["record_exceptions"] = [_single(child, tb) for _, child, tb in exc.child_exceptions if child is not None]
    return report

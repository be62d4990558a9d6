"""Exceptions as text, cheaply: what the logging and tracing middlewares put in failure lines and spans.

Python 3.11+'s ``traceback.format_exception`` re-parses every frame's source with ``ast`` to draw
``^^^^`` markers, which costs several times everything else a failed record's telemetry does. This
keeps Python's layout (chained exceptions, notes, exception groups with their sub-exceptions) without
the markers. Messages come from ``message`` (``safe_str`` unless told otherwise), so a caller can leave
out what an exception quotes (``observed_batch.redaction``).
"""

from __future__ import annotations

import builtins
import linecache
from collections import deque
from collections.abc import Callable
from types import CodeType, TracebackType

__all__ = ["format_exception", "safe_str", "type_name"]

_MAX_FRAMES = 64
#: Formatted frames by (code object, line): bounded, cleared when full.
_MAX_KNOWN_FRAMES = 512
_FRAMES: dict[tuple[CodeType, int | None], str] = {}
_MAX_CHAIN = 8
#: As Python's own traceback module: sub-exceptions shown per group, and group nesting depth.
_MAX_GROUP_WIDTH = 15
_MAX_GROUP_DEPTH = 10
#: ``BaseExceptionGroup`` (Python 3.11+), ``None`` before.
_GROUP_TYPE: type[BaseException] | None = getattr(builtins, "BaseExceptionGroup", None)
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def type_name(exc_type: type[BaseException]) -> str:
    """As Python's traceback spells it: ``ValueError``, ``orders.errors.PaymentDeclined``."""
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<exception str() failed: {type(exc).__name__}>"


def format_exception(
    exc: BaseException, tb: TracebackType | None, message: Callable[[BaseException], str] = safe_str
) -> str:
    """Python's traceback layout, chained exceptions and exception groups included, without 3.11+'s
    ``^^^^`` lines: those re-parse every frame's source with ``ast`` and cost several times the rest of a
    failure line."""
    return _format(exc, tb, message, 0)


def _format(exc: BaseException, tb: TracebackType | None, message: Callable[[BaseException], str], depth: int) -> str:
    chain: list[tuple[BaseException, TracebackType | None, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, tb if current is exc else current.__traceback__, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, error_tb, next_link in reversed(chain):
        if error_tb is not None:
            parts.append("Traceback (most recent call last):\n")
            frames: deque[str] = deque(maxlen=_MAX_FRAMES)
            walked = 0
            while error_tb is not None:
                frames.append(_frame(error_tb.tb_frame.f_code, error_tb.tb_lineno))
                walked += 1
                error_tb = error_tb.tb_next
            if walked > _MAX_FRAMES:
                parts.append(f"  [... {walked - _MAX_FRAMES} earlier frames omitted]\n")
            parts.extend(frames)
        text = message(error)
        parts.append(f"{type_name(type(error))}: {text}\n" if text else f"{type_name(type(error))}\n")
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            parts.extend(f"{note}\n" for note in notes)
        if _GROUP_TYPE is not None and isinstance(error, _GROUP_TYPE):
            parts.append(_group(error, message, depth))
        parts.append(next_link)
    return "".join(parts).rstrip("\n")


def _frame(code: CodeType, lineno: int | None) -> str:
    """A frame's two lines, formatted once per code location (failures of a batch share most of theirs)."""
    key = (code, lineno)
    text = _FRAMES.get(key)
    if text is None:
        source = linecache.getline(code.co_filename, lineno).strip() if lineno else ""
        frame = f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n'
        text = f"{frame}    {source}\n" if source else frame
        if len(_FRAMES) >= _MAX_KNOWN_FRAMES:
            _FRAMES.clear()
        _FRAMES[key] = text
    return text


def _group(group: BaseException, message: Callable[[BaseException], str], depth: int) -> str:
    """The sub-exceptions of an exception group, each under a numbered rule and indented with ``|``."""
    members: tuple[BaseException, ...] = getattr(group, "exceptions", ())
    if depth >= _MAX_GROUP_DEPTH:
        return f"  ... (max group depth is {_MAX_GROUP_DEPTH})\n"
    lines: list[str] = []
    for number, member in enumerate(members[:_MAX_GROUP_WIDTH], start=1):
        lines.append(f"  +---------------- {number} ----------------\n")
        text = _format(member, member.__traceback__, message, depth + 1)
        lines.extend(f"  | {line}\n" for line in text.split("\n"))
    if len(members) > _MAX_GROUP_WIDTH:
        lines.append(
            f"  +---------------- ... ----------------\n  | and {len(members) - _MAX_GROUP_WIDTH} more exceptions\n"
        )
    lines.append("  +------------------------------------\n")
    return "".join(lines)

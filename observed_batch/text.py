"""Text limits shared by every sink (logs, spans, X-Ray documents, Sentry events): one way to cut a text
to a size, whole characters only, with one marker."""

from __future__ import annotations

__all__ = ["TRUNCATION_MARKER", "cut", "cut_bytes"]

#: Appended to (or, when the tail is kept, prepended to) every text we cut.
TRUNCATION_MARKER = "...[truncated]"


def cut(text: str, limit: int, keep_tail: bool = False) -> str:
    """``text`` within ``limit`` characters, plus the marker when cut (a traceback keeps its tail: its last
    frames and the exception line matter most)."""
    if len(text) <= limit:
        return text
    if keep_tail:
        return TRUNCATION_MARKER + text[len(text) - limit :]
    return text[:limit] + TRUNCATION_MARKER


def cut_bytes(
    text: str, limit: int, keep_tail: bool = False, *, marker: str = TRUNCATION_MARKER, fit_marker: bool = False
) -> tuple[str, int]:
    """``text`` within ``limit`` UTF-8 bytes (never half a character), plus ``marker`` when cut, and the
    text's size in bytes. With ``fit_marker`` the marker counts toward ``limit`` (a hard cap)."""
    data = text.encode("utf-8", "replace")
    size = len(data)
    if size <= limit:
        return text, size
    room = max(0, limit - len(marker.encode("utf-8"))) if fit_marker else limit
    if keep_tail:
        return marker + data[size - room :].decode("utf-8", "ignore"), size
    return data[:room].decode("utf-8", "ignore") + marker, size

"""``observed_batch.tracebacks``: Python's traceback layout without 3.11's carets, frames formatted once."""

from __future__ import annotations

import re
import traceback

from observed_batch import tracebacks


def _raise_nested() -> None:
    def inner() -> None:
        raise ValueError("declined")

    try:
        inner()
    except ValueError as exc:
        raise RuntimeError("record failed") from exc


def _python_text(exc: BaseException) -> str:
    """Python's own text of ``exc``, without the caret lines (``^^^^`` / ``~~~~``)."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return "\n".join(line for line in lines if not re.fullmatch(r"\s*[\^~]+\s*", line))


def test_a_traceback_formatted_again_is_pythons_layout_without_carets() -> None:
    # GIVEN a chained exception raised through nested functions
    try:
        _raise_nested()
    except RuntimeError as exc:
        error = exc
    # WHEN it is formatted twice (the second time its frames come from the memo)
    first = tracebacks.format_exception(error, error.__traceback__)
    second = tracebacks.format_exception(error, error.__traceback__)
    # THEN both are Python's text, caret lines aside
    assert first == second == _python_text(error)


def test_the_frame_memo_stays_bounded() -> None:
    # GIVEN more distinct code locations than the memo keeps
    count = tracebacks._MAX_KNOWN_FRAMES + 20
    errors = []
    for number in range(count):
        namespace: dict[str, object] = {}
        exec(
            compile(f"def fail_{number}():\n    raise KeyError({number})\n", f"<generated {number}>", "exec"), namespace
        )
        try:
            namespace[f"fail_{number}"]()  # type: ignore[operator]
        except KeyError as exc:
            errors.append(exc)
    # WHEN each is formatted
    texts = [tracebacks.format_exception(error, error.__traceback__) for error in errors]
    # THEN the memo never grew past its bound, and every text names its own frame
    assert len(tracebacks._FRAMES) <= tracebacks._MAX_KNOWN_FRAMES
    assert all(
        f"in fail_{number}\n" in text and text.endswith(f"KeyError: {number}") for number, text in enumerate(texts)
    )

"""The one text-cutting rule every sink uses (observed_batch.text)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from observed_batch.text import TRUNCATION_MARKER, cut, cut_bytes


@given(st.text(), st.integers(min_value=len(TRUNCATION_MARKER.encode()), max_value=200), st.booleans())
def test_a_hard_cap_is_never_exceeded_and_never_splits_a_character(text: str, limit: int, keep_tail: bool) -> None:
    # GIVEN any text and a byte limit that leaves room for the marker
    # WHEN it is cut with the marker counted toward the limit
    kept, size = cut_bytes(text, limit, keep_tail, fit_marker=True)
    encoded = kept.encode("utf-8", "replace")
    # THEN the result fits, the original size is reported, and it is valid text (whole characters)
    assert len(encoded) <= limit
    assert size == len(text.encode("utf-8", "replace"))
    assert (kept == text) == (size <= limit)
    if kept != text:
        assert TRUNCATION_MARKER in kept


def test_a_soft_limit_keeps_the_limit_and_appends_the_marker() -> None:
    # GIVEN 3-byte characters and a limit that falls inside the second
    # WHEN it is cut
    kept, size = cut_bytes("€€€", 4)
    # THEN only whole characters within the limit are kept, then the marker
    assert (kept, size) == ("€" + TRUNCATION_MARKER, 9)


def test_a_traceback_keeps_its_tail() -> None:
    # GIVEN a long text and a character limit
    # WHEN it is cut keeping the tail
    # THEN the marker leads and the last characters stay
    assert cut("abcdef", 2, keep_tail=True) == TRUNCATION_MARKER + "ef"
    assert cut("abcdef", 2) == "ab" + TRUNCATION_MARKER
    assert cut("ab", 2) == "ab"

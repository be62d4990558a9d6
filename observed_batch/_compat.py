"""Every use of a Powertools private API, in one place.

Checked against aws-lambda-powertools 3.26.0 (the declared floor) and 3.37.0; CI runs the whole suite
against the lowest and the newest supported version. Besides these two, our processors override the
hook points Powertools' own docs tell custom processors to implement (``_prepare``, ``_clean``,
``_process_record``, ``_async_process_record``): those are a documented extension API.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROCESSOR_HOOKS", "set_fifo_group", "to_batch_type"]

#: The methods Powertools calls on a processor around a batch and per record (documented for custom
#: partial processors).
PROCESSOR_HOOKS = ("_prepare", "_clean", "_process_record", "_async_process_record")


def to_batch_type(processor: Any, raw: Any, event_type: Any) -> Any:
    """The record as Powertools hands it to the handler: ``BasePartialBatchProcessor._to_batch_type``
    (the pydantic model if one is set and the record validates, else the event source data class), or
    ``raw`` for a processor without one (a custom ``BasePartialProcessor``)."""
    convert = getattr(processor, "_to_batch_type", None)
    if convert is None:
        return raw
    try:
        return convert(raw, event_type, getattr(processor, "model", None))
    except Exception:
        return convert(raw, event_type)


def set_fifo_group(processor: Any, group: str | None) -> None:
    """``SqsFifoPartialProcessor._current_group_id``: the group a failure reported now is attributed to
    (``skip_group_on_error``). A no-op for other processors."""
    if hasattr(processor, "_current_group_id"):
        setattr(processor, "_current_group_id", group)  # noqa: B010

"""The human-readable report of ``observed-batch invoke`` (``--json`` prints the report dict as is).

Sections: the response (or the exception the handler raised, with each failed record's exception when
Powertools raised ``BatchProcessingError``), EMF metrics, log lines, spans, other handler output, and
when nothing was captured, the reasons that hold for this run.
"""

from __future__ import annotations

import json
import math
from typing import Any

from observed_batch.cli._common import emf_metrics

__all__ = ["render"]

_MAX_FIELD_CHARS = 160
#: Innermost frames shown per exception; the outer ones are counted in a "lines cut" marker.
_FRAMES_SHOWN = 3
#: Lines of an exception message shown (the rest are counted).
_MESSAGE_LINES = 4
#: Log fields every line has, shown in the line's prefix rather than as key=value.
_LOG_PREFIX_FIELDS = ("event", "message", "level", "timestamp", "exception", "logger")
#: Units of a duration metric's line, the largest its median reaches: old record ages read as days.
_DURATIONS = ((86_400_000, "days"), (3_600_000, "hours"), (60_000, "minutes"), (1000, "s"), (1, "ms"))
#: Fields shown first (the rest keep their order): what a reader scans for.
_LOG_FIRST_FIELDS = ("message_id", "exc_type", "exc_message", "successes", "failures", "skipped", "duration_ms")


def _capped(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"  ... {len(lines) - limit} more (--json shows all)"]


def _clip(text: str, limit: int = _MAX_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))


def _number(value: float) -> str:
    """Three significant digits, never in scientific notation; thousands separated."""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}".rstrip("0")


def _duration_unit(median_ms: float) -> tuple[float, str]:
    """One unit for a whole line of milliseconds: the largest the median reaches (ms below 1 s)."""
    return next(((size, name) for size, name in _DURATIONS if abs(median_ms) >= size), (1, "ms"))


# -- the response, or what the handler raised --------------------------------------------------------
def _frame_lines(info: dict[str, Any]) -> list[str]:
    """The innermost frames of an exception, as Python prints them; the outer ones are counted."""
    frames = info.get("frames") or []
    if not frames:
        return []
    shown = frames[-_FRAMES_SHOWN:]
    cut = frames[: len(frames) - len(shown)]
    lines = ["Traceback (most recent call last):"]
    if cut:
        cut_lines = sum(2 if frame["code"] else 1 for frame in cut)
        plural = "s" if len(cut) != 1 else ""
        lines.append(f"  … {cut_lines} lines cut ({len(cut)} outer frame{plural}; --json has the full traceback)")
    for frame in shown:
        lines.append(f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
        if frame["code"]:
            lines.append(f"    {_clip(frame['code'])}")
    return lines


def _message_lines(info: dict[str, Any]) -> list[str]:
    """``Type: message`` (first lines of a long message), and the cause if there is one."""
    message = str(info.get("message") or "").splitlines()
    lines = [_clip(f"{info['type']}: {message[0]}" if message else str(info["type"]), 240)]
    lines += [_clip(line, 240) for line in message[1:_MESSAGE_LINES]]
    if len(message) > _MESSAGE_LINES:
        lines.append(f"… {len(message) - _MESSAGE_LINES} lines cut (message)")
    if info.get("cause"):
        lines.append(f"(caused by {info['cause']})")
    return lines


def _place(info: dict[str, Any]) -> tuple[Any, ...]:
    frames = info.get("frames") or []
    last = frames[-1] if frames else {}
    return (info["type"], last.get("file"), last.get("line"))


def _record_exceptions(records: list[dict[str, Any]], limit: int) -> list[str]:
    """Each failed record's exception; its frames once per place (type and innermost line)."""
    lines = [f"Record exceptions ({len(records)}, in the order the records failed)"]
    seen: dict[tuple[Any, ...], int] = {}
    for number, info in enumerate(records, 1):
        head, *rest = _message_lines(info)
        place = _place(info)
        if place in seen:
            lines.append(_clip(f"  {number}. {head}  (raised where #{seen[place]} was)", 240))
            continue
        seen[place] = number
        lines.append(f"  {number}. {head}")
        lines += ["       " + line for line in (*rest, *_frame_lines(info))]
    return _capped(lines, max(limit, 8) + 1)


def _render_response(report: dict[str, Any], limit: int) -> list[str]:
    records, error = report["records"], report["error"]
    if error is not None:
        failed = error.get("record_exceptions")
        if failed is not None:
            return [
                f"Response: none. All {len(failed)} records failed, so Powertools raised BatchProcessingError"
                " instead of returning batchItemFailures; each record's exception is listed below.",
                "",
                *_record_exceptions(failed, limit),
            ]
        details = [*_frame_lines(error), *_message_lines(error)]
        return [f"Response: none, the handler raised {error['summary']}", *("  " + line for line in details)]
    failed = report["failed_records"]
    if failed is None:
        head = "Response (no batchItemFailures: not a partial batch response)"
    elif failed == 0:
        head = f"Response: all {records} records succeeded"
    else:
        head = f"Response: {failed} of {records} records failed"
    return [head, "  " + _clip(json.dumps(report["response"], default=str), 2000)]


# -- telemetry ---------------------------------------------------------------------------------------
def _render_metrics(documents: list[dict[str, Any]], limit: int) -> list[str]:
    lines = [f"Metrics ({len(documents)} EMF document{'s' if len(documents) != 1 else ''})"]
    for document in documents[:limit]:
        directives = document.get("_aws", {}).get("CloudWatchMetrics") or [{}]
        directive = directives[0] if isinstance(directives[0], dict) else {}
        names = sorted({name for group in directive.get("Dimensions") or [] for name in group})
        dimensions = " ".join(f"{name}={document.get(name)}" for name in names)
        lines.append(f"  namespace {directive.get('Namespace')}  dimensions {dimensions or '(none)'}")
        for stat in emf_metrics(document):
            if stat.is_count:
                lines.append(f"    {stat.name:<22} {_number(stat.total):>8}  {stat.unit}")
                continue
            size, unit = _duration_unit(stat.median) if stat.unit == "Milliseconds" else (1, stat.unit)
            low, median, high = (_number(v / size) for v in (stat.minimum, stat.median, stat.maximum))
            spread = f"min {low}  p50 {median}  max {high}"
            lines.append(f"    {stat.name:<22} {stat.samples:>8}  samples  {spread}  ({unit})")
    return lines


def _render_logs(logs: list[dict[str, Any]], limit: int) -> list[str]:
    lines = [f"Logs ({len(logs)} line{'s' if len(logs) != 1 else ''})"]
    for log in logs:
        event = log.get("event", log.get("message", ""))
        keys = sorted(
            (key for key in log if key not in _LOG_PREFIX_FIELDS),
            key=lambda key: _LOG_FIRST_FIELDS.index(key) if key in _LOG_FIRST_FIELDS else len(_LOG_FIRST_FIELDS),
        )
        fields = " ".join(f"{key}={_scalar(log[key])}" for key in keys)
        lines.append(_clip(f"  {str(log.get('level', '')).upper():<7} {_scalar(event):<16} {fields}".rstrip(), 240))
    return _capped(lines, limit + 1)


def _render_spans(spans: list[dict[str, Any]], limit: int, destination: str | None) -> list[str]:
    lines = [f"Spans ({len(spans)}; collected in memory, not exported)"]
    if destination:
        lines.append(f"  deployed, tracing sends them to {destination}")
    for span in spans:
        details = [
            f"{key}={_scalar(value)}"
            for key, value in span["attributes"].items()
            if key.endswith("message.id") or key == "error.type" or key.endswith("message_count")
        ]
        if span["links"]:
            details.append(f"links={len(span['links'])}")
        head = f"  {span['name']}  {span['kind']}  {span['status']}  {span['duration_ms']:.2f} ms"
        lines.append(_clip(f"{head}  {' '.join(details)}".rstrip(), 240))
    return _capped(lines, limit + (2 if destination else 1))


def _no_telemetry(report: dict[str, Any]) -> list[str]:
    """Why nothing was captured: only the reasons that hold for this run."""
    error = report["error"] or {}
    chains: list[list[str]] | None = report.get("middleware")
    reasons = []
    if not report["records"]:
        reasons.append("the event has no records")
    elif error.get("type") == "UnexpectedBatchTypeError":
        reasons.append(f"unexpected event type ({str(error.get('message', '')).strip()})")
    if report.get("disabled"):
        reasons.append("OBSERVED_BATCH_DISABLED is set")
    elif chains is not None and not chains:
        reasons.append("the handler built no observed_batch processor")
    elif chains is not None and not any(chains):
        reasons.append("no middleware enabled (set OBSERVED_BATCH_MIDDLEWARE)")
    if reasons:
        return [_clip(f"No telemetry captured: {'; '.join(reasons)}.", 400)]
    enabled = sorted({name for chain in chains or [] for name in chain})
    return [f"No telemetry captured (middleware enabled: {', '.join(enabled) or 'unknown'})."]


def render(report: dict[str, Any], limit: int = 20) -> str:
    """The human-readable report."""
    sections = [
        [f"{report['handler']}: {report['records']} records in {report['duration_ms']:.1f} ms"],
        _render_response(report, limit),
    ]
    if report["metrics"]:
        sections.append(_render_metrics(report["metrics"], limit))
    if report["logs"]:
        sections.append(_render_logs(report["logs"], limit))
    if report["spans"]:
        sections.append(_render_spans(report["spans"], limit, report.get("spans_deployed_to")))
    if report["stdout"]:
        output = [f"Handler output ({len(report['stdout'])} lines)", *("  " + line for line in report["stdout"])]
        sections.append(_capped(output, limit + 1))
    if not (report["metrics"] or report["logs"] or report["spans"]):
        sections.append(_no_telemetry(report))
    return "\n\n".join("\n".join(section) for section in sections)

"""Helpers shared by the ``observed-batch`` commands: one-line errors, progress, stdout telemetry.

Every command reports errors the same way, as click does: one line ``Error: ...`` on stderr and an
exit code. ``UsageProblem`` exits 2 (the command was asked something it cannot do: a bad argument, an
unreadable file, a ``ConfigError``, AWS refusing access); ``HandlerFailed`` exits 1 (the user's code
raised). Findings (``doctor``) exit 1 after their report. click's own argument errors (missing option,
bad choice) keep click's format and exit 2 too.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TextIO

import click

__all__ = [
    "HandlerFailed",
    "MetricStat",
    "Progress",
    "Telemetry",
    "Ticker",
    "UsageProblem",
    "capture_stdout",
    "config_problem",
    "emf_metrics",
    "read_json",
    "split_telemetry",
]


class UsageProblem(click.ClickException):
    """A usage or configuration error, reported as one line; exit code 2 (as click's own usage errors).

    The base of every exit-2 error of the commands; the message is kept to its first line.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message.strip().splitlines()[0] if message.strip() else message)


class HandlerFailed(click.ClickException):
    """The user's handler raised; exit code 1."""

    exit_code = 1


def config_problem(exc: Exception, context: str | None = None) -> UsageProblem:
    """A ``ConfigError`` as a usage problem: ``configuration error[ context]: <message>``."""
    where = f" {context}" if context else ""
    return UsageProblem(f"configuration error{where}: {exc}")


def read_json(path: str, what: str) -> Any:
    """Parse JSON from ``path`` (``-`` for stdin), raising ``UsageProblem`` with a one-line reason."""
    try:
        if path == "-":
            text = sys.stdin.read()
            path = "<stdin>"
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageProblem(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageProblem(f"{what} {path} is not UTF-8 text: {exc.reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise UsageProblem(f"{what} {path} is not valid JSON: {exc.msg} at {where}") from None


@dataclass
class Progress:
    """Progress lines on stderr for long runs: silent for the first ``delay_s``, then at most one line
    per ``interval_s``. Short runs print nothing, so output stays clean for pipes and tests."""

    label: str
    total: int
    _: KW_ONLY
    delay_s: float = 1.0
    interval_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    stream: TextIO | None = None
    lines: int = field(default=0, init=False)
    _last: float | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self._started < self.delay_s:
            return
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        self.lines += 1
        percent = 100.0 * done / self.total if self.total else 100.0
        click.echo(f"observed-batch: {self.label} {done}/{self.total} ({percent:.0f}%)", err=True, file=self.stream)


class Ticker:
    """Prints ``observed-batch: <label> (N s)`` on stderr every ``interval_s`` while a long call runs.

    For calls we cannot instrument (the user's handler): a daemon thread that waits on an event,
    so it costs nothing for short runs and stops as soon as the call returns.
    """

    def __init__(self, label: str, *, interval_s: float = 2.0, stream: TextIO | None = None) -> None:
        self.label = label
        self.interval_s = interval_s
        self._stream = stream
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observed-batch-ticker", daemon=True)
        self.lines = 0

    def _run(self) -> None:
        started = time.monotonic()
        while not self._done.wait(self.interval_s):
            self.lines += 1
            elapsed = time.monotonic() - started
            click.echo(f"observed-batch: {self.label} ({elapsed:.0f} s)", err=True, file=self._stream)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval_s + 1.0)


class _Capture(io.TextIOBase):
    """Stands in for ``sys.stdout``: keeps what the handler prints, split into lines."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] = []
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def lines(self) -> list[str]:
        with self._lock:
            text = "".join(self._parts)
        return [line for line in text.splitlines() if line.strip()]


@contextmanager
def capture_stdout() -> Iterator[Callable[[], list[str]]]:
    """Redirect ``sys.stdout`` (where Lambda handlers, EMF and JSON loggers write) and yield a function
    returning the captured non-empty lines. The metrics and logging middlewares look ``sys.stdout``
    up per line, so their output lands here."""
    capture = _Capture()
    previous = sys.stdout
    sys.stdout = capture
    try:
        yield capture.lines
    finally:
        sys.stdout = previous


@dataclass
class Telemetry:
    """Stdout lines sorted by kind: EMF documents (JSON with ``_aws``), JSON log lines (with
    ``event``, or ``level`` and ``message``), and everything else the handler printed."""

    emf: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def metric_totals(self) -> dict[str, float]:
        """Each metric summed over the EMF documents: counts add up, distributions add their ``Sum``."""
        totals: dict[str, float] = {}
        for document in self.emf:
            for stat in emf_metrics(document):
                totals[stat.name] = totals.get(stat.name, 0.0) + stat.total
        return totals


def split_telemetry(lines: Iterable[str]) -> Telemetry:
    telemetry = Telemetry()
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            telemetry.other.append(line)
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("_aws"), dict):
            telemetry.emf.append(parsed)
        elif isinstance(parsed, dict) and ("event" in parsed or ("level" in parsed and "message" in parsed)):
            telemetry.logs.append(parsed)  # structlog lines have "event", Powertools Logger lines "message"
        else:
            telemetry.other.append(line)
    return telemetry


@dataclass
class MetricStat:
    """One metric of one EMF document: a count (``samples == 1``) or a distribution's summary."""

    name: str
    unit: str
    samples: int
    total: float
    minimum: float
    maximum: float
    median: float

    @property
    def is_count(self) -> bool:
        return self.unit == "Count" and self.samples == 1


def emf_metrics(document: dict[str, Any]) -> list[MetricStat]:
    """The metrics an EMF document declares in its ``CloudWatchMetrics`` directives, with their values
    (a number, an array of numbers, or the ``{"Values", "Counts", ...}`` aggregated form)."""
    stats: list[MetricStat] = []
    seen: set[str] = set()
    directives = document.get("_aws", {}).get("CloudWatchMetrics", [])
    for directive in directives if isinstance(directives, list) else []:
        metrics = directive.get("Metrics", []) if isinstance(directive, dict) else []
        for metric in metrics if isinstance(metrics, list) else []:
            name = metric.get("Name") if isinstance(metric, dict) else None
            if not isinstance(name, str) or name in seen:
                continue
            seen.add(name)
            pairs = _value_pairs(document.get(name))
            if not pairs:
                continue
            unit = metric.get("Unit")
            stats.append(_stat(name, unit if isinstance(unit, str) else "None", pairs, document.get(name)))
    return stats


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_pairs(value: Any) -> list[tuple[float, float]]:
    """``(value, count)`` pairs of an EMF metric value."""
    if _number(value):
        return [(float(value), 1.0)]
    if isinstance(value, list):
        return [(float(v), 1.0) for v in value if _number(v)]
    if isinstance(value, dict) and isinstance(value.get("Values"), list):
        values = value["Values"]
        counts = value.get("Counts")
        if not isinstance(counts, list) or len(counts) != len(values):
            counts = [1] * len(values)
        pairs = zip(values, counts, strict=True)
        return [(float(v), float(c)) for v, c in pairs if _number(v) and _number(c) and c > 0]
    return []


def _stat(name: str, unit: str, pairs: list[tuple[float, float]], raw: Any) -> MetricStat:
    ordered = sorted(pairs)
    samples = sum(count for _, count in ordered)
    total = sum(value * count for value, count in ordered)
    cumulative = itertools.accumulate(count for _, count in ordered)
    median = next(value for (value, _), running in zip(ordered, cumulative, strict=True) if running >= samples / 2)
    minimum, maximum = ordered[0][0], ordered[-1][0]
    if isinstance(raw, dict):  # the aggregated form carries the exact figures
        samples = float(raw["Count"]) if _number(raw.get("Count")) else samples
        total = float(raw["Sum"]) if _number(raw.get("Sum")) else total
        minimum = float(raw["Min"]) if _number(raw.get("Min")) else minimum
        maximum = float(raw["Max"]) if _number(raw.get("Max")) else maximum
    return MetricStat(name, unit, int(samples), total, minimum, maximum, median)

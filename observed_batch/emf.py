"""CloudWatch Embedded Metric Format (EMF): build one document, encode distributions compactly.

A document is one JSON object with an ``_aws`` metadata member (timestamp, one metric directive:
namespace, dimension sets, metric definitions) and root members holding the dimension values and
the metric values. Counts are plain numbers. Distributions use the aggregated value form CloudWatch
Logs extracts (as the AWS EMF libraries and the OpenTelemetry EMF exporter write it)::

    "RecordProcessingTime": {"Values": [...], "Counts": [...], "Min": .., "Max": .., "Count": .., "Sum": ..}

``Min``, ``Max``, ``Count`` and ``Sum`` are exact, so CloudWatch's Minimum, Maximum, SampleCount, Sum
and Average are exact. ``Values``/``Counts`` feed percentiles; with more than 100 samples they are
downsampled (at most 100 pairs, the spec's limit per metric array) so that the nearest-rank p50, p90
and p99 computed from them stay within 3.5 % of the exact ones (3 % bands, 3 significant digits);
other percentiles are within about a factor of 2. A 10,000-record batch takes well under 1 KB.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Final

__all__ = [
    "MAX_DIMENSIONS_PER_SET",
    "MAX_DOCUMENT_BYTES",
    "MAX_METRICS_PER_DIRECTIVE",
    "MAX_VALUES_PER_METRIC",
    "PRECISE_QUANTILES",
    "QUANTILE_TOLERANCE",
    "UNITS",
    "distribution",
    "document",
]

#: Limits of the EMF specification.
MAX_METRICS_PER_DIRECTIVE: Final = 100
MAX_DIMENSIONS_PER_SET: Final = 30
MAX_VALUES_PER_METRIC: Final = 100
MAX_DOCUMENT_BYTES: Final = 1_048_576

#: CloudWatch metric units (``MetricDatum.Unit``).
UNITS: Final = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
        "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
        "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
        "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    }
)  # fmt: skip

#: Percentiles a downsampled distribution keeps within ``QUANTILE_TOLERANCE`` (relative).
PRECISE_QUANTILES: Final = (0.5, 0.9, 0.99)
QUANTILE_TOLERANCE: Final = 0.03
# Between the precise percentiles, samples within this ratio of each other share one value.
_COARSE_RATIO: Final = 2.0
# Squaring the coarse ratio a few times covers every value CloudWatch accepts in a few dozen groups.
_MAX_COARSENING: Final = 10
_SIGNIFICANT_DIGITS: Final = 3
# CloudWatch rejects metric values beyond this magnitude (and NaN / infinities).
_CLOUDWATCH_LIMIT: Final = 2.0**360


def document(
    *,
    namespace: str,
    dimension_sets: Sequence[Sequence[str]],
    dimensions: Mapping[str, str],
    metrics: Iterable[tuple[str, str, Any]],
    timestamp_ms: int,
) -> dict[str, Any]:
    """One EMF document with a single metric directive.

    ``metrics`` holds ``(name, unit, value)``; a value is a number or a ``distribution(...)``.
    Callers validate names and limits once (at cold start), so this stays a cheap dict build.
    """
    definitions: list[dict[str, str]] = []
    root: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [list(s) for s in dimension_sets], "Metrics": definitions}
            ],
        }
    }
    root.update(dimensions)
    for name, unit, value in metrics:
        definitions.append({"Name": name, "Unit": unit})
        root[name] = value
    return root


def distribution(values: Iterable[float], divisor: float = 1.0) -> dict[str, Any] | None:
    """Aggregated EMF value of ``values`` (each divided by ``divisor``), or ``None`` if there are none.

    Samples CloudWatch rejects (non-finite, beyond +-2**360) are dropped. Up to 100 samples are kept,
    rounded to 3 significant digits; beyond that see the module docstring. ``Min``/``Max`` and the
    first and last ``Values`` are exact.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    try:
        total = math.fsum(ordered)
    except (OverflowError, ValueError):  # huge finite samples; inf and -inf together
        total = math.nan
    if not (ordered[0] >= -_CLOUDWATCH_LIMIT and ordered[-1] <= _CLOUDWATCH_LIMIT and abs(total) <= _CLOUDWATCH_LIMIT):
        # Rare: NaN, infinities or huge samples. NaN leaves the sort unordered, so filter and sort again.
        ordered = sorted(v for v in ordered if -_CLOUDWATCH_LIMIT <= v <= _CLOUDWATCH_LIMIT)
        if not ordered:
            return None
        total = math.fsum(ordered)
    count = len(ordered)
    low, high = (ordered[0] / divisor, ordered[-1] / divisor) if divisor != 1 else (ordered[0], ordered[-1])
    if 2 < count <= MAX_VALUES_PER_METRIC:
        values, counts = _few(ordered, divisor, low, high)
        return {
            "Values": values,
            "Counts": counts,
            "Min": low,
            "Max": high,
            "Count": count,
            "Sum": _compact(total / divisor),
        }
    if count == 1:
        groups = [(ordered[0], 1)]
    else:
        middle = [(v, 1) for v in ordered[1:-1]] if count <= MAX_VALUES_PER_METRIC else _downsample(ordered)
        groups = [(ordered[0], 1), *middle, (ordered[-1], 1)]
    pairs: list[list[Any]] = []
    for index, (sample, weight) in enumerate(groups):
        value = sample / divisor if divisor != 1 else sample
        if 0 < index < len(groups) - 1:
            # Rounding must not push a value past the exact extremes.
            value = _compact(min(max(_round(value), low), high))
        if pairs and pairs[-1][0] == value:
            pairs[-1][1] += weight
        else:
            pairs.append([value, weight])
    return {
        "Values": [value for value, _ in pairs],
        "Counts": [weight for _, weight in pairs],
        "Min": low,
        "Max": high,
        "Count": count,
        "Sum": _compact(total / divisor),
    }


def _few(ordered: list[float], divisor: float, low: float, high: float) -> tuple[list[Any], list[int]]:
    """``Values``/``Counts`` of 3 to 100 samples (every invocation of a typical batch): the loop of
    ``distribution`` without its per-sample calls, same result."""
    values: list[Any] = [low]
    counts = [1]
    for sample in ordered[1:-1]:
        value: Any = float(f"{sample / divisor if divisor != 1 else sample:.{_SIGNIFICANT_DIGITS}g}")
        # Rounding must not push a value past the exact extremes.
        if value < low:
            value = low
        elif value > high:
            value = high
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if values[-1] == value:
            counts[-1] += 1
        else:
            values.append(value)
            counts.append(1)
    if values[-1] == high:
        counts[-1] += 1
    else:
        values.append(high)
        counts.append(1)
    return values, counts


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _compact(value: float) -> float:
    """Integral values as ``int``: ``1200`` is shorter JSON than ``1200.0``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _downsample(ordered: list[float]) -> list[tuple[float, int]]:
    """At most 98 ``(value, count)`` pairs for the samples between the extremes.

    Each precise percentile gets a band of the samples within ``QUANTILE_TOLERANCE`` of its exact
    value, represented by that exact value; the nearest-rank percentile of the result therefore
    falls in its own band. Samples between bands are grouped by ratio and represented by their mean.
    """
    count = len(ordered)
    anchors = sorted({ordered[math.ceil(q * count) - 1] for q in PRECISE_QUANTILES})
    bands: list[list[Any]] = []
    for anchor in anchors:
        low, high = sorted((anchor / (1 + QUANTILE_TOLERANCE), anchor * (1 + QUANTILE_TOLERANCE)))
        bands.append([bisect_left(ordered, low), bisect_right(ordered, high), anchor])
    for lower, upper in pairwise(bands):
        if lower[1] > upper[0]:
            # Overlapping bands split half-way: each anchor stays inside its own band.
            cut = bisect_right(ordered, (lower[2] + upper[2]) / 2)
            lower[1] = upper[0] = cut
    ratio = _COARSE_RATIO
    groups = _assemble(ordered, bands, ratio)
    for _ in range(_MAX_COARSENING):  # pragma: no branch - any CloudWatch values fit within 8 squarings
        if len(groups) <= MAX_VALUES_PER_METRIC - 2:
            break
        ratio *= ratio
        groups = _assemble(ordered, bands, ratio)
    return groups


def _assemble(ordered: list[float], bands: list[list[Any]], ratio: float) -> list[tuple[float, int]]:
    last = len(ordered) - 1
    groups: list[tuple[float, int]] = []
    position = 1
    for start, stop, anchor in bands:
        # For more than 100 samples every percentile anchor lies strictly between min and max.
        start, stop = max(start, position), min(stop, last)
        _coarse(ordered, position, start, ratio, groups)
        groups.append((anchor, stop - start))
        position = stop
    _coarse(ordered, position, last, ratio, groups)
    return groups


def _coarse(ordered: list[float], start: int, stop: int, ratio: float, groups: list[tuple[float, int]]) -> None:
    while start < stop:
        first = ordered[start]
        limit = first * ratio if first > 0 else first / ratio
        end = max(bisect_right(ordered, limit, start, stop), start + 1)
        groups.append((math.fsum(ordered[start:end]) / (end - start), end - start))
        start = end

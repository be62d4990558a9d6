"""EMF building blocks: the document shape and the downsampled distributions."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observed_batch import emf

QUANTILES = emf.PRECISE_QUANTILES


def nearest_rank(sorted_values: list[float], q: float) -> float:
    return sorted_values[math.ceil(q * len(sorted_values)) - 1]


def nearest_rank_of(distribution: dict[str, Any], q: float) -> float:
    """The percentile as computed from the value/count pairs CloudWatch receives."""
    rank = math.ceil(q * distribution["Count"])
    seen = 0
    for value, count in sorted(zip(distribution["Values"], distribution["Counts"], strict=True)):
        seen += count
        if seen >= rank:
            return float(value)
    raise AssertionError("counts do not add up")


def assert_summarizes(distribution: dict[str, Any] | None, samples: list[float]) -> None:
    assert distribution is not None
    exact = sorted(samples)
    assert distribution["Min"] == exact[0]
    assert distribution["Max"] == exact[-1]
    assert distribution["Count"] == len(exact)
    assert distribution["Sum"] == pytest.approx(math.fsum(exact), rel=1e-12, abs=1e-300)
    assert len(distribution["Values"]) == len(distribution["Counts"]) <= emf.MAX_VALUES_PER_METRIC
    assert sum(distribution["Counts"]) == len(exact)
    for q in QUANTILES:
        wanted = nearest_rank(exact, q)
        assert nearest_rank_of(distribution, q) == pytest.approx(wanted, rel=0.05), q


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(positive, min_size=101, max_size=3_000))
def test_downsampled_positive_samples_keep_extremes_totals_and_percentiles(samples: list[float]) -> None:
    # GIVEN more than 100 positive samples (durations, ages)
    # WHEN summarized
    # THEN at most 100 values, exact min/max/count/sum, p50 and p99 within 5 %
    assert_summarizes(emf.distribution(samples), samples)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=101, max_size=1_000))
def test_downsampling_also_holds_for_zero_and_negative_samples(samples: list[float]) -> None:
    # GIVEN samples of any sign
    # WHEN summarized
    # THEN the same guarantees hold
    assert_summarizes(emf.distribution(samples), samples)


@pytest.mark.parametrize(
    "samples",
    [
        pytest.param([random.Random(1).lognormvariate(2, 1.5) for _ in range(10_000)], id="lognormal-10k"),
        pytest.param([5.0] * 500, id="all-equal"),
        pytest.param([1.0] * 300 + [1_000.0] * 300, id="two-clusters"),
        pytest.param([1.0] * 990 + [1e9] * 10, id="tail-at-p99"),
        pytest.param([s * 10.0**e for e in range(-300, 108, 3) for s in (1, -1)] * 2, id="every-magnitude"),
        pytest.param([float(i) for i in range(101)], id="just-over-100"),
    ],
)
def test_downsampling_of_awkward_shapes(samples: list[float]) -> None:
    # GIVEN a distribution shape that stresses bands and coarse groups
    # WHEN summarized
    # THEN the guarantees hold
    assert_summarizes(emf.distribution(samples), samples)


def test_every_magnitude_is_coarsened_below_the_value_limit() -> None:
    # GIVEN samples of both signs over every magnitude CloudWatch accepts (thousands of groups at first)
    samples = [s * 10.0**e for e in range(-323, 109) for s in (1, -1)] + [0.0, 2.0**360, -(2.0**360)]
    # WHEN summarized
    distribution = emf.distribution(samples)
    # THEN the coarse groups widen until at most 100 values remain
    assert distribution is not None
    assert len(distribution["Values"]) <= emf.MAX_VALUES_PER_METRIC


def test_up_to_100_samples_are_kept_one_by_one() -> None:
    # GIVEN 100 distinct samples
    samples = [float(i) for i in range(1, 101)]
    random.Random(7).shuffle(samples)
    # WHEN summarized
    distribution = emf.distribution(samples)
    # THEN every sample is a value with count 1, in order (integral ones as integers: shorter JSON)
    assert distribution is not None
    assert distribution["Values"] == list(range(1, 101))
    assert all(isinstance(v, int) for v in distribution["Values"][1:-1])
    assert distribution["Counts"] == [1] * 100


def test_small_distributions_round_to_three_significant_digits_but_keep_extremes() -> None:
    # GIVEN samples with many digits
    samples = [0.001234567, 0.0023456789, 0.0034567891]
    # WHEN summarized
    distribution = emf.distribution(samples)
    # THEN inner values are rounded, the extremes exact
    assert distribution is not None
    assert distribution["Values"] == [0.001234567, 0.00235, 0.0034567891]


def test_equal_rounded_samples_merge_into_one_value() -> None:
    # GIVEN inner samples that agree to 3 significant digits
    samples = [1.0, 2.0001, 2.0002, 3.0]
    # WHEN summarized
    distribution = emf.distribution(samples)
    # THEN they share one value with their combined count
    assert distribution is not None
    assert distribution["Values"] == [1.0, 2.0, 3.0]
    assert distribution["Counts"] == [1, 2, 1]


def test_rounding_never_passes_the_extremes() -> None:
    # GIVEN an inner sample that rounds above the exact maximum
    samples = [1.0, 1.2356, 1.2357]
    # WHEN summarized
    distribution = emf.distribution(samples)
    # THEN it is clamped to the maximum (and merged with it)
    assert distribution is not None
    assert distribution["Values"] == [1.0, 1.2357]
    assert distribution["Counts"] == [1, 2]


def test_a_single_sample_is_one_value() -> None:
    # GIVEN one sample
    # WHEN summarized
    distribution = emf.distribution([42.5])
    # THEN one value, one count
    assert distribution == {"Values": [42.5], "Counts": [1], "Min": 42.5, "Max": 42.5, "Count": 1, "Sum": 42.5}


def test_integral_values_are_written_as_integers() -> None:
    # GIVEN whole-millisecond ages
    # WHEN summarized
    distribution = emf.distribution([1200, 3400, 5600])
    # THEN the JSON has no ".0" noise
    assert json.dumps(distribution) == (
        '{"Values": [1200, 3400, 5600], "Counts": [1, 1, 1], "Min": 1200, "Max": 5600, "Count": 3, "Sum": 10200}'
    )


def test_divisor_converts_units_exactly() -> None:
    # GIVEN nanosecond durations
    # WHEN summarized into milliseconds
    distribution = emf.distribution([3_627, 7_694, 13_145], divisor=1e6)
    # THEN values read as milliseconds without float noise
    assert distribution is not None
    assert distribution["Values"] == [0.003627, 0.00769, 0.013145]
    assert distribution["Sum"] == pytest.approx(0.024466)


def test_samples_cloudwatch_rejects_are_dropped() -> None:
    # GIVEN samples including NaN, infinities and magnitudes beyond 2**360
    # WHEN summarized
    distribution = emf.distribution([1.0, math.nan, math.inf, -math.inf, 1e200, -1e200, 2.0])
    # THEN only the ones CloudWatch accepts count
    assert distribution is not None
    assert distribution["Count"] == 2


@pytest.mark.parametrize("samples", [[], [math.nan]])
def test_no_finite_samples_means_no_distribution(samples: list[float]) -> None:
    # GIVEN nothing to summarize
    # WHEN summarized
    # THEN None: the caller leaves the metric out rather than emit an invalid empty array
    assert emf.distribution(samples) is None


def test_document_has_one_directive_and_root_members() -> None:
    # GIVEN dimensions and metrics
    # WHEN a document is built
    document = emf.document(
        namespace="Shop",
        dimension_sets=[("service",), ("service", "queue")],
        dimensions={"service": "orders", "queue": "q"},
        metrics=[("Processed", "Count", 3), ("Latency", "Milliseconds", emf.distribution([1.0, 2.0]))],
        timestamp_ms=1_700_000_000_000,
    )
    # THEN the metadata references root members holding the values
    assert document["_aws"] == {
        "Timestamp": 1_700_000_000_000,
        "CloudWatchMetrics": [
            {
                "Namespace": "Shop",
                "Dimensions": [["service"], ["service", "queue"]],
                "Metrics": [{"Name": "Processed", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}],
            }
        ],
    }
    assert (document["service"], document["queue"], document["Processed"]) == ("orders", "q", 3)
    assert document["Latency"]["Count"] == 2
    assert json.loads(json.dumps(document)) == document

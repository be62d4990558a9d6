"""The benchmark suite keeps working: a quick run (tiny N) in a subprocess. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
INVOCATION = RUN.with_name("bench_invocation.py")
VARIANTS = (
    "bare",
    "hand_rolled",
    "disabled",
    "chain_empty",
    "chain_noop",
    "chain_noop_hooks",
    "metrics",
    "tracing",
    "sentry",
    "logging",
    "timeout_guard",
    "retry_policy_on",
    "metrics_retry_policy",
    "metrics_sentry_logging",
    "metrics_sentry_logging_dsn",
    "all_on",
    "all_on_batch_span",
)


def _run(
    *arguments: str, cwd: Path, script: Path = RUN, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``script`` with ``arguments`` in a subprocess, without our variables (and those starting with ``drop``)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVED_BATCH_", *drop))}
    return subprocess.run(
        [sys.executable, str(script), *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    directory = tmp_path_factory.mktemp("bench")
    report = directory / "results.json"
    done = _run("--quick", "--json", str(report), cwd=directory)
    results = json.loads(report.read_text()) if report.exists() else {}
    return done, results


def test_quick_run_succeeds(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    # GIVEN the suite in quick mode (every variant, SQS and Kinesis, cold start)
    done, _ = quick_run

    # THEN it exits 0: no variant crashed or answered differently from bare Powertools
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_every_variant_is_measured_or_marked_unavailable(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    # GIVEN the raw results of the quick run
    _, results = quick_run

    # THEN each variant appears in each scenario, measured or n/a (a built-in not landed yet), never an error
    rows = results["results"]
    assert {(row["variant"], row["scenario"]) for row in rows} == {
        (variant, scenario) for variant in VARIANTS for scenario in ("sqs:10", "sqs:30", "kinesis:10")
    }
    assert {row["status"] for row in rows} <= {"ok", "n/a"}
    for row in rows:
        if row["status"] == "ok":
            assert row["best_us_per_record"] > 0
            assert row["median_us_per_record"] >= row["best_us_per_record"]
            assert row["peak_bytes"] is not None


def test_bare_and_kill_switch_are_always_measured(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    # GIVEN the raw results of the quick run
    _, results = quick_run

    # THEN the baseline and the zero-middleware variants never depend on a built-in
    measured = {row["variant"] for row in results["results"] if row["status"] == "ok"}
    assert {"bare", "disabled", "chain_empty", "chain_noop"} <= measured


def test_metrics_variants_report_emf_volume(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    # GIVEN the rows of variants that emit EMF
    _, results = quick_run
    rows = [r for r in results["results"] if r["variant"].startswith(("metrics", "all_on")) and r["status"] == "ok"]
    if not rows:
        pytest.skip("the metrics middleware is not available")

    # THEN each captured exactly one EMF document per invocation, of a measured size
    for row in rows:
        assert row["emf_documents"] == 1
        assert row["emf_bytes"] > 0


def test_report_has_every_section(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    # GIVEN the printed report
    done, _ = quick_run

    # THEN it has the per-scenario tables, scaling with its slope, cold start with breakdown, and the goals
    for heading in ("## SQS 10 records", "## Kinesis 10 records", "## Scaling", "## Cold start", "## Goals"):
        assert heading in done.stdout
    assert "| variant | µs/record best | µs/record median | n | x bare (best) | x bare (paired) |" in done.stdout
    assert "| slope |" in done.stdout
    assert "`-X importtime` aws_lambda_powertools.utilities.batch" in done.stdout


def test_cold_start_measures_powertools_and_observed_batch(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    # GIVEN the cold start results
    _, results = quick_run
    imports = {entry["label"]: entry for entry in results["imports"]}

    # THEN both baselines were timed in a fresh interpreter, with an -X importtime breakdown
    for label in ("aws_lambda_powertools.utilities.batch", "observed_batch"):
        assert imports[label]["status"] == "ok"
        assert imports[label]["times_ms"]
        assert imports[label]["breakdown"]


def test_unknown_variant_is_rejected(tmp_path: Path) -> None:
    # WHEN the suite is asked for a variant that does not exist
    done = _run("--quick", "--only", "bare,metric", cwd=tmp_path)

    # THEN it exits 2 naming the bad key and the valid ones
    assert done.returncode == 2
    assert "unknown variant(s): metric; valid: bare, hand_rolled" in done.stdout


def test_invocation_benchmark_reports_every_row_and_goal(tmp_path: Path) -> None:
    # WHEN the 10-record invocation benchmark runs with tiny N
    done = _run("--samples", "2", "--inner", "1", cwd=tmp_path, script=INVOCATION, drop=("SENTRY_",))

    # THEN it exits 0 with its rows and a verdict per goal (PASS or MISS: timings are not asserted)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in ("### 10 records, none failing", "### 10 records, 1 failing", "### 10 records, all failing"):
        assert heading in done.stdout
    goals = done.stdout.split("### Goals (issue 22)")[1]
    assert goals.count("| PASS |") + goals.count("| MISS |") == 8


def test_cold_start_benchmark_reports_wall_and_cpu_per_variant(tmp_path: Path) -> None:
    # WHEN the cold-start benchmark runs one pair of two variants (tracing exports to its OTLP receiver)
    cold_start = RUN.with_name("bench_cold_start.py")
    arguments = ("--pairs", "1", "--only", "chain_empty,tracing")
    done = _run(*arguments, cwd=tmp_path, script=cold_start, drop=("SENTRY_", "OTEL_"))

    # THEN it exits 0 with one row per variant, wall and CPU differences included (timings are not asserted)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| added, median of pairs | added CPU, median of pairs | ratio (paired) |" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| (chain, none) |", "| tracing |"))]
    assert len(rows) == 2
    assert all(row.count(" ms |") == 2 for row in rows)


@pytest.mark.parametrize(
    "producers", [(), ("--shared-producer",), ("--no-producer",)], ids=["distinct", "shared", "none"]
)
def test_tracing_benchmark_reports_the_added_cost_next_to_a_hand_written_span(
    tmp_path: Path, producers: tuple[str, ...]
) -> None:
    # WHEN the tracing benchmark runs with tiny N, records carrying distinct, shared or no producer contexts
    arguments = ("--records", "20", "--repeats", "1", *producers)
    done = _run(*arguments, cwd=tmp_path, script=RUN.with_name("bench_tracing.py"), drop=("OTEL_",))

    # THEN it exits 0 and reports issue 22's ratio of added costs (timings are not asserted)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "added cost tracing_100 / manual_span = " in done.stdout

"""observed_batch benchmark suite: per-record cost, memory, EMF volume, scaling and cold start.

    python benchmarks/run.py                 # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick         # tiny N, for CI: proves the suite works, asserts nothing
    python benchmarks/run.py --only bare,chain_empty,disabled --scenarios sqs:10000   # issue 3's ratio

Every variant runs in this one process on the same event with the same handler (parse the JSON
body, fail 10 % of the records), interleaved sample by sample so that drift hits all alike.
Built-ins that are not available in this checkout are reported as n/a. Import times are measured
in fresh subprocesses. Exit status: 0, or 1 when a variant crashed or answered differently from
bare Powertools (never because of a timing: goals are reported, not asserted).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _variants as v

REPO = Path(__file__).resolve().parent.parent
FULL_SCENARIOS = ("sqs:100", "sqs:1000", "sqs:10000", "kinesis:10000")
QUICK_SCENARIOS = ("sqs:10", "sqs:30", "kinesis:10")
HEADLINE = "sqs:10000"

SAMPLE_SECONDS = 0.5
VARIANT_SECONDS = 20.0  # per variant and scenario, after MIN_SAMPLES samples
MIN_SAMPLES = 3

GOAL_CHAIN_RATIO = 1.02
GOAL_NOOP_RATIO = 1.20  # one no-op middleware (generator or after_record): the chain's price per record (issue 22)
GOAL_MSL_RATIO = 3.0  # metrics + sentry + logging (issue 22)
GOAL_ALL_ON_RATIO = 4.0
GOAL_HAND_ROLLED_FACTOR = 10.0
GOAL_EMF_BYTES = 1024
GOAL_IMPORT_MS = 15.0
GOAL_MEMORY_RATIO = 1.3
GOAL_SLOPE = 1.1  # log-log slope of invocation time vs records: 1.0 is linear, 2.0 quadratic


@dataclass
class Result:
    variant: v.Variant
    scenario: str
    size: int
    status: str = "ok"  # ok | n/a | error
    reason: str = ""
    samples_us: list[float] = field(default_factory=list)  # µs per record, one per sample
    peak_bytes: int | None = None
    emf_bytes: int | None = None
    emf_documents: int | None = None
    stdout_bytes: int | None = None
    sentry_envelopes: int | None = None
    probe_seconds: float = 0.0  # the warm-up invocation (first call: includes one-time costs)
    timed_seconds: float = 0.0

    @property
    def best(self) -> float:
        return min(self.samples_us)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_us)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "variant": self.variant.key,
            "scenario": self.scenario,
            "records": self.size,
            "status": self.status,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.samples_us:
            data.update(best_us_per_record=self.best, median_us_per_record=self.median, samples=self.samples_us)
        data.update(
            peak_bytes=self.peak_bytes,
            emf_bytes=self.emf_bytes,
            emf_documents=self.emf_documents,
            stdout_bytes=self.stdout_bytes,
            sentry_envelopes=self.sentry_envelopes,
        )
        return data


# -- per-record cost ------------------------------------------------------------------------------
class Suite:
    def __init__(self, args: argparse.Namespace, out: TextIO, sink: v.CountingSink, backends: v.Backends) -> None:
        self.args = args
        self.out = out
        self.sink = sink
        self.backends = backends
        self.results: dict[str, dict[str, Result]] = {}  # scenario -> variant key -> result
        # CPU time of the whole process (the Sentry worker and receiver threads included) is much
        # less disturbed than wall time by other processes on a shared machine, but misses waits.
        self.clock = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
        self.failed = False

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run_scenario(self, spec: str, chosen: list[v.Variant]) -> None:
        kind, size_text = spec.split(":")
        scenario = v.make_scenario(kind, int(size_text))
        self.say(f"\n## {scenario.name} records, {100 // v.FAIL_EVERY} % failing")
        results = {variant.key: Result(variant, spec, scenario.size) for variant in chosen}
        self.results[spec] = results
        invokers: dict[str, v.Invoke] = {}
        expected: Any = None
        for variant in chosen:
            result = results[variant.key]
            missing = [reason for name in variant.needs if (reason := v.builtin_available(name))]
            if missing:
                result.status, result.reason = "n/a", missing[0]
                continue
            try:
                invoke = variant.build(scenario, self.backends)
                response = self._probe(invoke, scenario, result)
            except v.Unavailable as exc:
                result.status, result.reason = "n/a", str(exc)
                continue
            except Exception as exc:
                result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
                self.failed = True
                continue
            if expected is None:
                expected = response
            elif response != expected:
                result.status, result.reason = "error", "partial response differs from bare Powertools"
                self.failed = True
                continue
            invokers[variant.key] = invoke
        self._time(scenario, invokers, results)
        if not self.args.no_memory:
            for key, invoke in invokers.items():
                if results[key].status == "ok":
                    results[key].peak_bytes = self._peak_memory(invoke, scenario.event, collect=not self.args.quick)
        self.say(markdown_table(list(results.values()), results.get("bare")))

    def _probe(self, invoke: v.Invoke, scenario: v.Scenario, result: Result) -> Any:
        """One warm-up invocation that also measures output volume and checks the response."""
        self.sink.reset()
        envelopes_before = self.backends.receiver.envelopes if self.backends.receiver else 0
        started = time.perf_counter()
        response = invoke(scenario.event)
        result.probe_seconds = time.perf_counter() - started
        failures = len(response.get("batchItemFailures", []))
        if failures != scenario.size // v.FAIL_EVERY:
            raise RuntimeError(f"{failures} failures reported, expected {scenario.size // v.FAIL_EVERY}")
        result.emf_bytes, result.emf_documents = self.sink.emf_bytes, self.sink.emf_documents
        result.stdout_bytes = self.sink.bytes
        if self.backends.receiver is not None:
            import sentry_sdk

            sentry_sdk.flush(timeout=2.0)  # the receiver counts before it answers: flushed = counted
            result.sentry_envelopes = self.backends.receiver.envelopes - envelopes_before
        return response

    def _time(self, scenario: v.Scenario, invokers: dict[str, v.Invoke], results: dict[str, Result]) -> None:
        event = scenario.event
        for _ in range(self.args.samples):
            for key, invoke in invokers.items():
                result = results[key]
                if result.status != "ok":
                    continue
                if len(result.samples_us) >= MIN_SAMPLES and result.timed_seconds > VARIANT_SECONDS:
                    continue  # a slow variant (hand-rolled) stops early: its ratio is not in question
                invocations = self._invocations(scenario, result)
                if not self.args.quick:  # a full collection costs ~50 ms here: most of a quick run
                    gc.collect()
                clock = self.clock
                try:
                    started = clock()
                    for _ in range(invocations):
                        invoke(event)
                    elapsed = clock() - started
                except Exception as exc:
                    result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
                    self.failed = True
                    continue
                result.samples_us.append(elapsed / 1000 / invocations / scenario.size)
                result.timed_seconds += elapsed / 1e9

    def _invocations(self, scenario: v.Scenario, result: Result) -> int:
        """Small batches repeat up to ``--records-per-sample`` records, but a sample of a slow variant
        stops growing at ~``SAMPLE_SECONDS`` (judged from the warm-up) to keep the suite's runtime sane."""
        most = max(1, int(self.args.records_per_sample) // scenario.size)
        per_invocation = max(result.probe_seconds, 1e-6)
        return max(1, min(most, math.ceil(SAMPLE_SECONDS / per_invocation)))

    @staticmethod
    def _peak_memory(invoke: v.Invoke, event: dict[str, Any], collect: bool) -> int:
        """Peak bytes allocated during one warm invocation, over what was allocated before it."""
        if collect:
            gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            invoke(event)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return max(0, int(peak) - int(before))


# -- formatting -----------------------------------------------------------------------------------
def paired_ratio(row: Result, bare: Result) -> float:
    """Median over rounds of row / bare timed in the same round: load that drifts during the run
    cancels out, which the ratio of two minima does not do."""
    pairs = [mine / base for mine, base in zip(row.samples_us, bare.samples_us, strict=False)]
    return statistics.median(pairs)


def _fmt_bytes(value: int | None, unit: str = "KiB") -> str:
    if value is None:
        return "—"
    return f"{value / 1024:,.1f}" if unit == "KiB" else f"{value / 1024 / 1024:,.2f}"


def markdown_table(rows: list[Result], bare: Result | None) -> str:
    header = (
        "| variant | µs/record best | µs/record median | n | x bare (best) | x bare (paired) | peak MiB"
        " | EMF B/inv | stdout KiB/inv | Sentry env/inv |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    base = bare if bare is not None and bare.status == "ok" and bare.samples_us else None
    for row in rows:
        if row.status != "ok" or not row.samples_us:
            note = row.reason.splitlines()[0][:90] if row.reason else ""
            lines.append(f"| {row.variant.label} | {row.status} | | | | | | | | {note} |")
            continue
        ratio = f"{row.best / base.best:.2f}" if base else "—"
        paired = f"{paired_ratio(row, base):.2f}" if base else "—"
        emf = "—" if not row.emf_bytes else f"{row.emf_bytes:,} ({row.emf_documents} doc)"
        envelopes = "—" if not row.sentry_envelopes else str(row.sentry_envelopes)
        lines.append(
            f"| {row.variant.label} | {row.best:,.2f} | {row.median:,.2f} | {len(row.samples_us)} | {ratio} | "
            f"{paired} | {_fmt_bytes(row.peak_bytes, 'MiB')} | {emf} | {_fmt_bytes(row.stdout_bytes)} | {envelopes} |"
        )
    return "\n".join(lines)


# -- scaling --------------------------------------------------------------------------------------
def scaling(suite: Suite) -> list[tuple[str, dict[int, float], float | None]]:
    """Per variant: best µs/record at each SQS size and the log-log slope of invocation time vs N."""
    sizes = sorted(
        {r.size for spec, rs in suite.results.items() if spec.startswith("sqs:") for r in rs.values()},
    )
    rows = []
    keys = dict.fromkeys(key for rs in suite.results.values() for key in rs)
    for key in keys:
        points: dict[int, float] = {}
        for spec, rs in suite.results.items():
            result = rs.get(key)
            if spec.startswith("sqs:") and result is not None and result.status == "ok" and result.samples_us:
                points[result.size] = result.best
        slope = None
        if len(points) >= 2:
            xs = [math.log(n) for n in points]
            ys = [math.log(us * n) for n, us in points.items()]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        label = next(r.variant.label for rs in suite.results.values() if key in rs for r in [rs[key]])
        rows.append((label, {n: points[n] for n in sizes if n in points}, slope))
    return rows


def scaling_table(rows: list[tuple[str, dict[int, float], float | None]]) -> str:
    sizes = sorted({n for _, points, _ in rows for n in points})
    lines = [
        "| variant | " + " | ".join(f"µs/rec @ {n:,}" for n in sizes) + " | slope |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for label, points, slope in rows:
        if not points:
            continue
        cells = " | ".join(f"{points[n]:,.2f}" if n in points else "—" for n in sizes)
        lines.append(f"| {label} | {cells} | {'—' if slope is None else f'{slope:.3f}'} |")
    return "\n".join(lines)


# -- cold start -----------------------------------------------------------------------------------
_IMPORT_TIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(.+)$")


@dataclass
class ImportResult:
    label: str
    statement: str
    status: str = "ok"
    reason: str = ""
    times_ms: list[float] = field(default_factory=list)
    #: Per timed run: module -> self µs, from ``-X importtime``.
    runs: list[dict[str, int]] = field(default_factory=list)
    breakdown: list[tuple[int, int, str]] = field(default_factory=list)  # (cumulative µs, self µs, module)
    #: Per timed run: self time of the modules Powertools' batch import does not load, in ms.
    added_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def _clean_env() -> dict[str, str]:
    prefixes = ("OBSERVED_BATCH_", "POWERTOOLS_", "SENTRY_", "OTEL_")
    return {k: val for k, val in os.environ.items() if not k.startswith(prefixes)}


def import_times(repeats: int, quick: bool = False) -> list[ImportResult]:
    """Import time per target in fresh interpreters, run under ``-X importtime``.

    Two numbers per target: the wall time of the import statement (median), and the self time of
    the modules that Powertools' batch import does not load (median): what the target *adds* to a
    function that already imports Powertools, and much less sensitive to load on the machine.
    ``quick`` does a single run per target (bytecode not warmed: inflated, but proves it works).
    """
    targets = [
        ImportResult("aws_lambda_powertools.utilities.batch", "import aws_lambda_powertools.utilities.batch"),
        ImportResult("observed_batch", "import observed_batch"),
        ImportResult("observed_batch + observed_batch.middleware", "import observed_batch, observed_batch.middleware"),
    ]
    available = []
    for name in v.BUILTIN_NAMES:
        reason = v.builtin_available(name)
        target = ImportResult(
            f"observed_batch + {name}",
            f"import observed_batch; from observed_batch.config import builtin_class; builtin_class({name!r})",
        )
        if reason:
            target.status, target.reason = "n/a", reason
        else:
            available.append(name)
        targets.append(target)
    everything = ImportResult(
        "observed_batch + all built-ins",
        "import observed_batch; from observed_batch.config import builtin_class; "
        + "; ".join(f"builtin_class({n!r})" for n in v.BUILTIN_NAMES),
    )
    if len(available) != len(v.BUILTIN_NAMES):
        everything.status, everything.reason = "n/a", "not every built-in is available"
    targets.append(everything)
    env = _clean_env()
    with tempfile.TemporaryDirectory() as cwd:  # not the repo root: measure the installed package
        if not quick:
            # As after `pip install` (which compiles bytecode): the warm-up round writes every module's
            # .pyc (a checkout has none, and PYTHONDONTWRITEBYTECODE may be set), the timed runs read them.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(cwd) / "pycache")
        # Round-robin over the targets, so that load on the machine hits them alike.
        rounds = [True] if quick else [False] + [True] * repeats
        for record in rounds:
            for target in targets:
                if target.status == "ok":
                    _time_import(target, cwd, env, record)
    baseline = set().union(*targets[0].runs) if targets[0].runs else set()
    for target in targets:
        if target.status != "ok" or not target.runs:
            continue
        target.added_ms = [
            sum(us for module, us in run.items() if module not in baseline) / 1000 for run in target.runs
        ]
    return targets


def _time_import(target: ImportResult, cwd: str, env: dict[str, str], record: bool) -> None:
    """One fresh interpreter; ``record=False`` is the warm-up that writes the bytecode caches."""
    code = f"import time; t = time.perf_counter(); {target.statement}; print(time.perf_counter() - t)"
    try:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        done.check_returncode()
        elapsed_ms = float(done.stdout.strip().splitlines()[-1]) * 1000
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        target.status, target.reason = "error", f"{type(exc).__name__}: {exc}"
        return
    if not record:
        return
    entries = []
    for line in done.stderr.splitlines():
        match = _IMPORT_TIME.match(line)
        if match:
            entries.append((int(match.group(2)), int(match.group(1)), match.group(4).strip()))
    target.times_ms.append(elapsed_ms)
    target.runs.append({module: own for _, own, module in entries})
    if not target.breakdown or elapsed_ms <= min(target.times_ms):
        target.breakdown = sorted(entries, reverse=True)  # keep the fastest run's breakdown


def import_table(targets: list[ImportResult]) -> str:
    base = targets[0].median if targets and targets[0].times_ms else None
    lines = [
        "| import | median ms | min ms | median - Powertools ms | added modules' own time ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for target in targets:
        if target.status != "ok" or not target.times_ms:
            lines.append(f"| {target.label} | {target.status} | | | {target.reason.splitlines()[0][:80]} |")
            continue
        over = f"{target.median - base:+.1f}" if base is not None else "—"
        added = f"{statistics.median(target.added_ms):.1f}" if target.added_ms else "—"
        lines.append(f"| {target.label} | {target.median:.1f} | {min(target.times_ms):.1f} | {over} | {added} |")
    return "\n".join(lines)


def import_breakdown(targets: list[ImportResult], top: int) -> str:
    """Powertools' top imports, then for each other target only what it adds over Powertools."""
    if not targets or not targets[0].breakdown:
        return ""
    baseline = {module for _, _, module in targets[0].breakdown}
    blocks = [f"`-X importtime` {targets[0].label}, top {top} by cumulative µs (cumulative, self):"]
    blocks += [f"    {cum:>8} {own:>8}  {module}" for cum, own, module in targets[0].breakdown[:top]]
    for target in targets[1:]:
        added = [entry for entry in target.breakdown if entry[2] not in baseline]
        if added:
            blocks.append(f"`-X importtime` {target.label}: modules Powertools does not import, top {top}:")
            blocks += [f"    {cum:>8} {own:>8}  {module}" for cum, own, module in added[:top]]
    return "\n".join(blocks)


# -- profiles -------------------------------------------------------------------------------------
_STDLIB = sysconfig.get_paths()["stdlib"]


def _group(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "built-in functions (C)"
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if f"{REPO.as_posix()}/middleware/" in path:
        return "observed_batch.middleware." + Path(path).stem
    if f"{REPO.as_posix()}/observed_batch/" in path:
        return "observed_batch." + Path(path).stem
    if f"{REPO.as_posix()}/benchmarks/" in path:
        return "benchmark handler/harness"
    if path.startswith(_STDLIB):
        return "stdlib " + path[len(_STDLIB) :].strip("/").split("/", 1)[0].removesuffix(".py")
    return path


def profile(invoke: v.Invoke, event: dict[str, Any], top: int) -> str:
    """Where one invocation spends its time: own time grouped by package, then the top functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    invoke(event)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    groups: dict[str, float] = {}
    for (filename, _, _), entry in raw.items():
        groups[_group(filename)] = groups.get(_group(filename), 0.0) + entry[2]
    lines = ["own time by package (cProfile, one invocation):"]
    for name, seconds in sorted(groups.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"    {seconds / total:6.1%}  {name}")
    lines.append("top functions by own time:")
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, function), entry in ranked:
        lines.append(f"    {entry[2] / total:6.1%}  {entry[1]:>8} calls  {function}  ({_group(filename)}:{line})")
    return "\n".join(lines)


# -- goals ----------------------------------------------------------------------------------------
def _ok(results: dict[str, Result], key: str) -> Result | None:
    result = results.get(key)
    return result if result is not None and result.status == "ok" and result.samples_us else None


def goals(
    suite: Suite, imports: list[ImportResult], slopes: list[tuple[str, dict[int, float], float | None]]
) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows; verdict is PASS, MISS or n/a."""
    rows: list[tuple[str, str, str]] = []
    spec = HEADLINE if HEADLINE in suite.results else next(reversed(suite.results), None)
    results = suite.results.get(spec, {}) if spec else {}
    bare, chain, disabled = _ok(results, "bare"), _ok(results, "chain_empty"), _ok(results, "disabled")
    all_on, hand = _ok(results, "all_on"), _ok(results, "hand_rolled")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    def ratios(row: Result, base: Result) -> tuple[str, float]:
        """Both ratios for the record; the verdict uses the paired one (robust to load drift)."""
        paired = paired_ratio(row, base)
        return f"best {row.best / base.best:.3f}x, paired {paired:.3f}x", paired

    for label, other in (("chain, no middleware", chain), ("kill switch", disabled)):
        if bare and other:
            text, ratio = ratios(other, bare)
            rows.append((f"{label} ≤ {GOAL_CHAIN_RATIO}x bare", text, verdict(ratio <= GOAL_CHAIN_RATIO)))
    goal_rows = (
        ("chain_noop", GOAL_NOOP_RATIO),
        ("chain_noop_hooks", GOAL_NOOP_RATIO),
        ("metrics_sentry_logging", GOAL_MSL_RATIO),
        ("metrics_sentry_logging_dsn", GOAL_MSL_RATIO),
    )
    for key, threshold in goal_rows:
        row = _ok(results, key)
        if bare and row:
            text, ratio = ratios(row, bare)
            rows.append((f"{row.variant.label} ≤ {threshold:g}x bare", text, verdict(ratio <= threshold)))
    if bare and all_on:
        text, ratio = ratios(all_on, bare)
        rows.append((f"all on ≤ {GOAL_ALL_ON_RATIO:g}x bare", text, verdict(ratio <= GOAL_ALL_ON_RATIO)))
    else:
        rows.append((f"all on ≤ {GOAL_ALL_ON_RATIO:g}x bare", "—", "n/a"))
    if hand and all_on:
        text, ratio = ratios(hand, all_on)
        rows.append((f"all on ≥ {GOAL_HAND_ROLLED_FACTOR:g}x faster than hand-rolled", text, verdict(ratio >= 10)))
    else:
        rows.append((f"all on ≥ {GOAL_HAND_ROLLED_FACTOR:g}x faster than hand-rolled", "—", "n/a"))
    for key in ("metrics", "all_on"):
        result = _ok(results, key)
        if result is not None and result.emf_bytes is not None:
            ok = result.emf_bytes <= GOAL_EMF_BYTES
            rows.append((f"EMF ≤ 1 KB per invocation ({key}, {spec})", f"{result.emf_bytes:,} B", verdict(ok)))
    if bare and all_on and bare.peak_bytes and all_on.peak_bytes is not None:
        ratio = all_on.peak_bytes / bare.peak_bytes
        rows.append((f"peak memory all on ≤ {GOAL_MEMORY_RATIO}x bare", f"{ratio:.2f}x", verdict(ratio <= 1.3)))
    else:
        rows.append((f"peak memory all on ≤ {GOAL_MEMORY_RATIO}x bare", "—", "n/a"))
    ours = next((t for t in imports if t.label == "observed_batch" and t.status == "ok" and t.added_ms), None)
    if ours is not None:
        added = statistics.median(ours.added_ms)
        rows.append(
            (f"import ≤ {GOAL_IMPORT_MS:g} ms over Powertools", f"{added:+.1f} ms", verdict(added <= GOAL_IMPORT_MS))
        )
    for label, _, slope in slopes:
        if slope is not None:
            rows.append((f"flat per-record cost ({label})", f"slope {slope:.3f}", verdict(slope <= GOAL_SLOPE)))
    return rows


def goals_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| goal | measured | verdict |", "|---|---:|---|"]
    lines += [f"| {goal} | {measured} | {verdict} |" for goal, measured, verdict in rows]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny N and few samples: a smoke run for CI")
    parser.add_argument("--scenarios", help=f"comma list of kind:size (default {','.join(FULL_SCENARIOS)})")
    parser.add_argument("--only", help="comma list of variant keys (default: all)")
    parser.add_argument("--samples", type=int, help="timed samples per variant (best of N; default 10)")
    parser.add_argument("--records-per-sample", type=int, help="small batches repeat to this many records per sample")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall (perf_counter, default) or cpu (process time, all threads: steadier on a busy machine)",
    )
    parser.add_argument("--import-repeats", type=int, help="fresh interpreters per import target (default 10)")
    parser.add_argument("--no-import", action="store_true", help="skip the cold start measurements")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--profile", help="comma list of variant keys to profile (cProfile) on the largest scenario")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--markdown", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.scenarios = (args.scenarios or ",".join(QUICK_SCENARIOS if quick else FULL_SCENARIOS)).split(",")
    args.samples = args.samples or (2 if quick else 10)
    args.records_per_sample = args.records_per_sample or (100 if quick else 10_000)
    args.import_repeats = args.import_repeats or (1 if quick else 10)
    for spec in args.scenarios:
        kind, _, size = spec.partition(":")
        if kind not in ("sqs", "kinesis") or not size.isdigit() or int(size) < v.FAIL_EVERY:
            parser.error(f"bad scenario {spec!r}: use sqs:N or kinesis:N with N >= {v.FAIL_EVERY}")
    return args


def machine() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'unknown CPU'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stdout
    sink = v.CountingSink()
    report: list[str] = []

    def say(text: str = "") -> None:
        report.append(text)
        out.write(text + "\n")
        out.flush()

    chosen = v.variants()
    if args.only:
        keys = args.only.split(",")
        unknown = set(keys) - {variant.key for variant in chosen}
        if unknown:
            say(f"unknown variant(s): {', '.join(sorted(unknown))}; valid: {', '.join(x.key for x in chosen)}")
            return 2
        chosen = [variant for variant in chosen if variant.key in keys]
    # Everything the variants print (logs, EMF) goes to the sink, installed before any backend exists.
    sys.stdout = sink
    backends = v.install_backends(sink)
    try:
        suite = Suite(args, out, sink, backends)
        suite.say = say  # type: ignore[method-assign]
        say("# observed_batch benchmarks" + (" (quick mode: numbers are meaningless)" if args.quick else ""))
        say(
            f"\n{machine()}; samples={args.samples}, records per sample ≥ {args.records_per_sample:,},"
            f" clock={args.clock}"
        )
        say("Handler: parse the JSON body, raise for every 10th record. µs/record = one Lambda invocation / records.")
        started = time.monotonic()
        for spec in args.scenarios:
            suite.run_scenario(spec, chosen)
        slopes = scaling(suite)
        if len({n for _, points, _ in slopes for n in points}) >= 2:
            say("\n## Scaling (SQS, best µs/record; slope = d log(time) / d log(records), 1.0 is linear)")
            say(scaling_table(slopes))
        imports: list[ImportResult] = []
        if not args.no_import:
            how = "one -X importtime run each, inflated" if args.quick else f"median of {args.import_repeats}"
            say(f"\n## Cold start (fresh interpreter, import only, {how})")
            imports = import_times(args.import_repeats, quick=args.quick)
            say(import_table(imports))
            say("\n" + import_breakdown(imports, top=5 if args.quick else 10))
        rows = goals(suite, imports, slopes)
        say("\n## Goals")
        say(goals_table(rows))
        to_profile = set(args.profile.split(",")) if args.profile else set()
        if not args.quick and any(verdict == "MISS" for _, _, verdict in rows):
            to_profile.add("all_on")
        if to_profile:
            largest = max(suite.results, key=lambda s: int(s.split(":")[1]))
            kind, size = largest.split(":")
            scenario = v.make_scenario(kind, int(size))
            for variant in chosen:
                if variant.key in to_profile and suite.results[largest][variant.key].status == "ok":
                    say(f"\n## Profile: {variant.label}, {scenario.name}")
                    say(profile(variant.build(scenario, backends), scenario.event, top=15))
        say(f"\nsuite ran in {time.monotonic() - started:.0f} s")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine(),
                        "quick": args.quick,
                        "results": [r.as_dict() for rs in suite.results.values() for r in rs.values()],
                        "imports": [
                            {
                                "label": t.label,
                                "status": t.status,
                                "times_ms": t.times_ms,
                                "breakdown": t.breakdown[:40],
                            }
                            for t in imports
                        ],
                        "goals": rows,
                    },
                    indent=2,
                )
            )
        if args.markdown:
            args.markdown.write_text("\n".join(report) + "\n")
        if suite.failed:
            say("\nFAILED: a variant crashed or answered differently from bare Powertools (see the tables)")
            return 1
        return 0
    finally:
        sys.stdout = out
        v.shutdown_backends(backends)


if __name__ == "__main__":
    sys.exit(main())

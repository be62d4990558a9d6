"""An ordered middleware chain (the first middleware is outermost): which hooks take part, the batch hooks,
policy resolutions and error containment. The per-record steps are ``observed_batch.driver``."""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from typing import Any

from observed_batch.errors import ConfigError
from observed_batch.typing import (
    DEAD_LETTERED,
    RESOLUTIONS,
    BatchContext,
    Middleware,
    Outcome,
    RecordContext,
)

__all__ = ["ON_FAILURE", "Chain", "contain", "record_steps", "release_resolved"]

logger = logging.getLogger("observed_batch")


#: A record step's exit when the middleware only has ``on_record_failed`` for the record.
ON_FAILURE: Any = object()


def _overrides(middleware: object, hook: str) -> bool:
    """Hooks left as the no-op base implementation are not called at all (zero cost)."""
    implementation = getattr(type(middleware), hook, None)
    return implementation is not None and implementation is not getattr(Middleware, hook)


def _record_step(middleware: Middleware, failures_only: bool = False) -> tuple[Any, ...] | None:
    """How a middleware takes part in each record: ``(middleware, wrap_record, before_record, exit)``, the
    bound hooks it overrides (else ``None``); ``exit`` is its ``after_record``, or ``ON_FAILURE`` when only
    its ``on_record_failed`` runs after the core. ``None``: it takes no part in records."""
    failed = ON_FAILURE if _overrides(middleware, "on_record_failed") else None
    if failures_only:
        return None if failed is None else (middleware, None, None, failed)
    if _overrides(middleware, "wrap_record"):  # the generator is the hook (it may run the plain ones: super())
        return (middleware, middleware.wrap_record, None, None)
    before = middleware.before_record if _overrides(middleware, "before_record") else None
    after = middleware.after_record if _overrides(middleware, "after_record") else failed
    return None if before is None and after is None else (middleware, None, before, after)


def record_steps(batch: BatchContext, steps: tuple[tuple[Any, ...], ...]) -> None:
    """Set the batch's record steps and what the driver derives from them once per batch."""
    batch._steps = steps
    batch._wraps = any(step[1] is not None or step[2] is not None or step[3] is not ON_FAILURE for step in steps)
    # No generator in the batch: the driver needs no per-record list (the exits are one tuple for all records).
    batch._plain = all(step[1] is None for step in steps)
    batch._exits = tuple(step[3] for step in steps)
    # driver.enter reduced to a RecordContext: records as a list, only plain after-hooks (no FailRecord).
    batch._quick = batch._wraps and batch._plain and not batch._streamed and all(step[2] is None for step in steps)
    single = steps[0][3] if len(steps) == 1 and steps[0][1] is None else None
    batch._single_after = None if single is ON_FAILURE else single
    batch._single_wrap = steps[0][1] if len(steps) == 1 else None
    batch._befores = tuple((position, step[0], step[2]) for position, step in enumerate(steps) if step[2] is not None)


def narrow_steps(batch: BatchContext, middleware: Middleware, failures: bool) -> None:
    """``BatchContext.skip_record_hooks``: ``middleware`` leaves the batch's records (but for its
    ``on_record_failed`` with ``failures``)."""
    steps: list[tuple[Any, ...]] = []
    for step in batch._steps:
        if step[0] is middleware:
            narrowed = _record_step(middleware, failures_only=True) if failures else None
            if narrowed is None:
                continue
            step = narrowed
        steps.append(step)
    record_steps(batch, tuple(steps))


def _check_style(middleware: Middleware) -> None:
    """A class may not define ``wrap_record`` and a plain hook (nor add a plain hook under an inherited
    ``wrap_record``). A subclass overriding an inherited plain hook's class with ``wrap_record`` is fine: its
    generator is the hook, and ``yield from super().wrap_record(record)`` runs the plain hooks."""
    if not _overrides(middleware, "wrap_record"):
        return
    mro = type(middleware).__mro__
    plain = [_owner(mro, hook) for hook in ("before_record", "after_record") if _overrides(middleware, hook)]
    if plain and min(plain) <= _owner(mro, "wrap_record"):
        name = getattr(middleware, "name", None) or type(middleware).__name__
        raise ConfigError(
            f"middleware {name!r} ({type(middleware).__qualname__}) defines wrap_record and before_record/"
            "after_record: use one style, e.g. move the code before the yield into before_record and the code"
            " after it into after_record, and remove wrap_record"
        )


def _owner(mro: tuple[type, ...], hook: str) -> int:
    """Position in the MRO of the class whose ``hook`` is in effect (0: the middleware's own class)."""
    return next(position for position, cls in enumerate(mro) if hook in cls.__dict__)


class Chain:
    __slots__ = ("_budget", "_durations", "_end", "_record", "_start", "has_policy", "middlewares")

    def __init__(self, middlewares: Sequence[Middleware]) -> None:
        self.middlewares = tuple(middlewares)
        for middleware in self.middlewares:
            _check_style(middleware)
        self._start = tuple(m for m in self.middlewares if _overrides(m, "on_batch_start"))
        self._record = tuple(step for step in map(_record_step, self.middlewares) if step is not None)
        self._durations = any(getattr(type(m), "needs_durations", False) is True for m in self.middlewares)
        # Batch ends unwind like nested context managers: outermost middleware last.
        self._end = tuple(m for m in reversed(self.middlewares) if _overrides(m, "on_batch_end"))
        self._budget = tuple(m for m in self.middlewares if _overrides(m, "flush_budget_ms"))
        #: A declared policy middleware (``policy = True``) is in the chain: records may be resolved.
        self.has_policy = any(getattr(type(m), "policy", False) is True for m in self.middlewares)

    def __bool__(self) -> bool:
        return bool(self.middlewares)

    def check_event_type(self, event_type: Any) -> None:
        """Each middleware refuses a source it cannot serve (``ConfigError``, not contained: configuration)."""
        for middleware in self.middlewares:
            if _overrides(middleware, "check_event_type"):
                middleware.check_event_type(event_type)

    def resolve(self, record: RecordContext, middleware: Any, resolution: str) -> bool:
        """``RecordContext.resolve``: only a declared policy may take a failed record out of the failures."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}")
        if getattr(type(middleware), "policy", False) is not True:
            contain(record.batch, middleware, "resolve", PermissionError("only a policy middleware may resolve"))
            return False
        if record.outcome is not Outcome.FAILURE or record._resolution is not None:
            return False
        record._resolution = resolution
        batch = record.batch
        batch._resolved.append(record)
        if resolution == DEAD_LETTERED:
            batch.summary.dead_lettered += 1
        else:
            batch.summary.dropped += 1
        return True

    def start_batch(self, batch: BatchContext) -> None:
        record_steps(batch, self._record)  # on_batch_start may narrow them (BatchContext.skip_record_hooks)
        batch._chain = self
        if self._durations:
            batch.durations_ns = array("q")  # 8 bytes a record, not ~36 for a list of ints
        for middleware in self._start:
            try:
                middleware.on_batch_start(batch)
            except Exception as exc:
                contain(batch, middleware, "on_batch_start", exc)

    def telemetry_budget_ms(self, batch: BatchContext) -> int:
        """Sum of the middlewares' ``flush_budget_ms`` now (see ``BatchContext.telemetry_budget_ms``)."""
        budget = 0
        for middleware in self._budget:
            try:
                budget += max(0, int(middleware.flush_budget_ms(batch)))
            except Exception as exc:
                contain(batch, middleware, "flush_budget_ms", exc)
        return budget

    def end_batch(self, batch: BatchContext) -> None:
        summary = batch.summary
        summary.duration_ms = batch.elapsed_ms()
        for middleware in self._end:
            try:
                middleware.on_batch_end(batch, summary)
            except Exception as exc:
                contain(batch, middleware, "on_batch_end", exc)
        for name, count in summary.middleware_errors.items():
            if count > 1:
                logger.warning("observed_batch middleware %r failed %d times in this batch", name, count)


def release_resolved(batch: BatchContext, processor: Any) -> None:
    """Before Powertools builds the response (``_clean``): take the records policies resolved out of its
    ``fail_messages`` and ``exceptions`` (kept aligned: ``failure_handler`` appends to both), so that the
    response, ``raise_on_entire_batch_failure`` and ``processor.exceptions`` agree with the resolutions."""
    exceptions = getattr(processor, "exceptions", None)
    fail_messages = getattr(processor, "fail_messages", None)
    if not isinstance(exceptions, list) or not isinstance(fail_messages, list):
        return
    for record in batch._resolved:
        # The core kept the very tuple Powertools appended (sync: exceptions[-1]; async: failure_handler).
        position = next((i for i, known in enumerate(exceptions) if known is record.exc_info), None)
        if position is None or len(exceptions) != len(fail_messages):
            logger.error(
                "observed_batch: record %s was resolved as %s but the processor's failure bookkeeping does not"
                " hold it (a failure_handler override?); it stays in batchItemFailures",
                record.message_id,
                record.resolution,
            )
            continue
        del exceptions[position], fail_messages[position]


def contain(batch: BatchContext, middleware: Any, phase: str, exc: BaseException) -> None:
    """Log a middleware's error once per batch per middleware; the record outcome stays the core's."""
    name = getattr(middleware, "name", None) or type(middleware).__name__
    errors = batch.summary.middleware_errors
    count = errors.get(name, 0)
    errors[name] = count + 1
    if count == 0:
        logger.warning(
            "observed_batch middleware %r failed in %s; record outcomes are unaffected",
            name,
            phase,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

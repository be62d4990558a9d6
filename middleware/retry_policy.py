"""``retry_policy``: non-retryable failures to the dead-letter queue on the first try; backoff for the rest.

A record whose handler raised one of the ``non_retryable`` exception classes fails the same way on every
receive. Instead of costing ``maxReceiveCount`` receives before SQS moves it to the DLQ:

- ``on_non_retryable="dead_letter"`` (default): a copy goes to the source queue's DLQ (its RedrivePolicy
  target, looked up once per cold start, or ``dead_letter_queue_url``), with the body, the message
  attributes and ours (error type and message, source queue, original message id, receive count). Once
  SQS returned the copy's MessageId, the record is resolved (``dead_lettered``): left out of
  ``batchItemFailures``, so SQS deletes the original. If the send fails or there is no time left for it
  (``batch.wait_budget_s``), the record stays a failure: nothing is lost, it is retried.
- ``on_non_retryable="drop"``: the record is resolved (``dropped``), counted and logged, nothing sent.

With ``backoff_base_s`` > 0, every failure still reported at the end of the batch becomes visible again
after ``uniform(0, min(backoff_max_s, backoff_base_s * 2 ** (ApproximateReceiveCount - 1)))`` seconds
(full jitter), set by one ChangeMessageVisibilityBatch per 10 records at batch end. A failing call only
logs: the record is retried after the queue's visibility timeout, as without the policy.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from aws_lambda_powertools.utilities.batch import EventType

from observed_batch import sources
from observed_batch.errors import ConfigError
from observed_batch.middleware._sqs_policy import QueueDirectory, dead_letter_message
from observed_batch.options import Option, Options, validated
from observed_batch.typing import BatchContext, BatchSummary, Middleware, RecordContext

__all__ = ["MAX_VISIBILITY_TIMEOUT_S", "RetryPolicyMiddleware", "resolve_exception_classes"]

logger = logging.getLogger("observed_batch.retry_policy")

#: SQS's largest VisibilityTimeout: 12 hours.
MAX_VISIBILITY_TIMEOUT_S = 43_200
_ENV_NON_RETRYABLE = "OBSERVED_BATCH_RETRY_POLICY_NON_RETRYABLE"
_BATCH = 10  # entries per ChangeMessageVisibilityBatch


def resolve_exception_classes(value: str | Sequence[type[BaseException] | str]) -> tuple[type[BaseException], ...]:
    """Exception classes from classes or dotted names (a comma-separated string, as the environment gives)."""
    items: Sequence[type[BaseException] | str] = (
        [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    )
    classes: list[type[BaseException]] = []
    for item in items:
        found = _import_dotted(item) if isinstance(item, str) else item
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise ConfigError(
                f"retry_policy option non_retryable ({_ENV_NON_RETRYABLE}): {item!r} is not an exception class"
            )
        classes.append(found)
    return tuple(classes)


def _import_dotted(name: str) -> Any:
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = getattr(found, attribute)
        except AttributeError:
            break
        return found
    raise ConfigError(
        f"retry_policy option non_retryable ({_ENV_NON_RETRYABLE}): cannot import {name!r};"
        " use the dotted path of an exception class, e.g. orders.errors.InvalidOrder"
    )


def _full_jitter(cap_s: float) -> float:
    return random.uniform(0.0, cap_s)  # spreading retries, not cryptography


@validated
class RetryPolicyMiddleware(Middleware):
    """Policy: dead-letter or drop non-retryable failures at once; optional per-message backoff (SQS).

    Place it last (the default order does): every middleware before it sees ``record.resolution``.
    """

    name = "retry_policy"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "non_retryable",
            str,
            "",
            "Exception classes (in code) or their dotted names, comma-separated (env). A name that does "
            "not import is a `ConfigError` at cold start. Subclasses match.",
            default_doc="none",
            accepts=lambda value: isinstance(value, Sequence),
            expects="a list of exception classes or their dotted names",
        ),
        Option(
            "on_non_retryable",
            ("dead_letter", "drop"),
            "dead_letter",
            "`dead_letter`: copy to the DLQ, then resolve; `drop`: resolve, count and log.",
        ),
        Option(
            "dead_letter_queue_url",
            str,
            None,
            "Where copies go, instead of the redrive target.",
            default_doc="the source queue's RedrivePolicy target",
        ),
        Option(
            "backoff_base_s",
            float,
            0.0,
            "Backoff base in seconds; `0` leaves visibility to the queue (off).",
            max=MAX_VISIBILITY_TIMEOUT_S,
        ),
        Option(
            "backoff_max_s",
            float,
            900.0,
            "Cap of the backoff (at most 12 h, SQS's longest visibility timeout).",
            max=MAX_VISIBILITY_TIMEOUT_S,
        ),
        Option(
            "timeout_ms",
            int,
            2000,
            "Bound of each SQS call; a call starts only when this much time is left before the deadline reserve.",
            min=1,
        ),
        Option(
            "sqs_client",
            None,
            None,
            "A boto3 SQS client (tests inject one; production builds one with `timeout_ms` timeouts).",
            default_doc="built on first use",
        ),
        Option(
            "jitter",
            None,
            None,
            "`jitter(cap_s) -> seconds`: how the backoff picks a delay (tests pin it).",
            default_doc="uniform in `[0, cap]`",
            accepts=callable,
            expects="a callable",
        ),
    )
    policy = True

    def __init__(
        self,
        *,
        non_retryable: str | Sequence[type[BaseException] | str] = "",
        on_non_retryable: Literal["dead_letter", "drop"] = "dead_letter",
        dead_letter_queue_url: str | None = None,
        backoff_base_s: float = 0.0,
        backoff_max_s: float = 900.0,
        timeout_ms: int = 2000,
        sqs_client: Any = None,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        """``sqs_client`` (a boto3 SQS client) is built on first use if not given; ``jitter(cap_s)`` picks a
        delay in ``[0, cap_s]`` (default uniform: full jitter; tests pin it)."""
        # Each value was checked against OPTIONS (@validated); what is left are rules between options.
        if backoff_base_s > backoff_max_s:
            raise ConfigError(
                f"retry_policy options backoff_base_s={backoff_base_s!r}, backoff_max_s={backoff_max_s!r}: need"
                " backoff_base_s <= backoff_max_s"
            )
        self.non_retryable = resolve_exception_classes(non_retryable)
        self.on_non_retryable = on_non_retryable
        self.dead_letter_queue_url = dead_letter_queue_url or None
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.timeout_ms = timeout_ms
        self._jitter = jitter if jitter is not None else _full_jitter
        self._queues = QueueDirectory(sqs_client, self.dead_letter_queue_url, timeout_ms / 1000.0)

    def check_event_type(self, event_type: EventType) -> None:
        if event_type is EventType.SQS:
            return
        if self.non_retryable and self.on_non_retryable == "dead_letter":
            raise ConfigError(
                "retry_policy on_non_retryable=dead_letter needs an SQS source; for streams use"
                " on_non_retryable=drop (and the mapping's on-failure destination)"
            )
        if self.backoff_base_s:
            raise ConfigError("retry_policy backoff_base_s is for SQS (ChangeMessageVisibility); set it to 0 here")

    def on_batch_start(self, batch: BatchContext) -> None:
        if not self.non_retryable and not self.backoff_base_s:
            batch.skip_record_hooks(self)  # nothing configured: free

    def on_record_failed(self, record: RecordContext) -> None:
        # Failures only: a batch without failures runs no code of this policy per record.
        exc = record.exc_info[1] if record.exc_info is not None else None
        if exc is not None and self.non_retryable and isinstance(exc, self.non_retryable):
            if self.on_non_retryable == "drop":
                record.resolve(self, "dropped")
                logger.warning(
                    "retry_policy: dropped record %s after non-retryable %s", record.message_id, type(exc).__name__
                )
                return
            if self._dead_letter(record, exc):
                return
        if self.backoff_base_s:
            handle = sources.receipt_handle(record.raw)
            if handle is not None:
                record.batch.scratch.setdefault(self, []).append((handle, record.receive_count or 1))

    def _dead_letter(self, record: RecordContext, exc: BaseException) -> bool:
        batch = record.batch
        arn = batch.event_source_arn
        if batch.wait_budget_s(self.timeout_ms) * 1000 < self.timeout_ms:
            logger.warning(
                "retry_policy: no time left to dead-letter record %s (%d ms needed); it stays a failure",
                record.message_id,
                self.timeout_ms,
            )
            return False
        try:
            url = self._queues.dead_letter_url(arn) if arn else self.dead_letter_queue_url
            if url is None:
                return False
            response = self._queues.client(_region(arn)).send_message(**dead_letter_message(record, exc, url))
        except Exception:
            logger.warning(
                "retry_policy: could not dead-letter record %s; it stays a failure", record.message_id, exc_info=True
            )
            return False
        copy_id = response.get("MessageId") if isinstance(response, dict) else None
        if not copy_id:
            return False
        if record.resolve(self, "dead_lettered"):
            logger.warning(
                "retry_policy: record %s (non-retryable %s) dead-lettered as message %s",
                record.message_id,
                type(exc).__name__,
                copy_id,
            )
        return True

    def delay_s(self, receive_count: int) -> int:
        """The visibility timeout for a failure on its ``receive_count``-th receive (full jitter, whole seconds)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(max(receive_count - 1, 0), 32))
        return max(0, min(MAX_VISIBILITY_TIMEOUT_S, round(self._jitter(cap))))

    def flush_budget_ms(self, batch: BatchContext) -> int:
        return self.timeout_ms if batch.scratch.get(self) else 0

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        pending: list[tuple[str, int]] = batch.scratch.pop(self, None) or []
        arn = batch.event_source_arn
        if not pending or not arn:
            return
        try:
            url = self._queues.url(arn)
        except Exception:
            logger.warning("retry_policy: could not look up %s; no backoff this batch", arn, exc_info=True)
            return
        client = self._queues.client(_region(arn))
        for start in range(0, len(pending), _BATCH):
            if batch.wait_budget_s(self.timeout_ms) * 1000 < self.timeout_ms:
                logger.warning("retry_policy: no time left to back off %d failures", len(pending) - start)
                return
            chunk = pending[start : start + _BATCH]
            entries = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": self.delay_s(count)}
                for n, (handle, count) in enumerate(chunk)
            ]
            try:
                failed = client.change_message_visibility_batch(QueueUrl=url, Entries=entries).get("Failed")
            except Exception:
                logger.warning("retry_policy: ChangeMessageVisibilityBatch failed", exc_info=True)
                continue
            if failed:
                logger.warning("retry_policy: ChangeMessageVisibilityBatch refused %d entries: %s", len(failed), failed)


def _region(arn: str | None) -> str | None:
    parts = (arn or "").split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None

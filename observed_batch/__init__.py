"""observed_batch: Powertools batch processing with observability in one import line.

    from observed_batch import BatchProcessor, EventType, process_partial_response

Same classes and functions as ``aws_lambda_powertools.utilities.batch``; the Powertools core runs
underneath, and an ordered middleware chain (metrics, tracing, sentry, logging, timeout_guard)
wraps each record. Backends (opentelemetry, sentry_sdk, structlog) are imported only when their
middleware is enabled.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import (
    EventType,
    ExceptionInfo,
    async_batch_processor,
    async_process_partial_response,
    batch_processor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from observed_batch.config import Config
from observed_batch.errors import ConfigError, FailRecord, MissingBackendError, ObservedBatchError
from observed_batch.processors import AsyncBatchProcessor, BatchProcessor, SqsFifoPartialProcessor
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

__version__ = "0.1.0"

__all__ = [
    "AsyncBatchProcessor",
    "BatchContext",
    "BatchProcessingError",
    "BatchProcessor",
    "BatchSummary",
    "Config",
    "ConfigError",
    "EventType",
    "ExceptionInfo",
    "FailRecord",
    "Middleware",
    "MissingBackendError",
    "ObservedBatchError",
    "Outcome",
    "RecordContext",
    "SqsFifoPartialProcessor",
    "async_batch_processor",
    "async_process_partial_response",
    "batch_processor",
    "process_partial_response",
]

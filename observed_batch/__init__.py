"""observed_batch: Powertools batch processing with observability in one import line.

    from observed_batch import BatchProcessor, EventType, process_partial_response

Every public name of ``aws_lambda_powertools.utilities.batch`` (``observed_batch.types`` mirrors its
``types`` module): the processors and the bases for custom processors subclass Powertools' and add an
ordered middleware chain (metrics, tracing, sentry, logging, timeout_guard) around each record;
every other name is Powertools' own object. Backends (opentelemetry, sentry_sdk, structlog) are imported only when their
middleware is enabled.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import (
    BatchTypeModels,
    EventType,
    ExceptionInfo,
    FailureResponse,
    SuccessResponse,
    async_batch_processor,
    async_process_partial_response,
    batch_processor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from observed_batch.config import Config
from observed_batch.custom import BasePartialBatchProcessor, BasePartialProcessor
from observed_batch.errors import ConfigError, FailRecord, MissingBackendError, ObservedBatchError
from observed_batch.processors import AsyncBatchProcessor, BatchProcessor, SqsFifoPartialProcessor
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

__version__ = "0.1.0"

__all__ = [
    "AsyncBatchProcessor",
    "BasePartialBatchProcessor",
    "BasePartialProcessor",
    "BatchContext",
    "BatchProcessingError",
    "BatchProcessor",
    "BatchSummary",
    "BatchTypeModels",
    "Config",
    "ConfigError",
    "EventType",
    "ExceptionInfo",
    "FailRecord",
    "FailureResponse",
    "Middleware",
    "MissingBackendError",
    "ObservedBatchError",
    "Outcome",
    "RecordContext",
    "SqsFifoPartialProcessor",
    "SuccessResponse",
    "async_batch_processor",
    "async_process_partial_response",
    "batch_processor",
    "process_partial_response",
]

"""Powertools' batch typing module, re-exported: ``observed_batch.types`` is a drop-in for
``aws_lambda_powertools.utilities.batch.types``.

    from observed_batch.types import PartialItemFailureResponse

Every name is Powertools' own object (``observed_batch.types.PartialItemFailures is`` Powertools'),
so annotations written against either import agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.batch.types import (
    BatchSqsTypeModel,
    BatchTypeModels,
    PartialItemFailureResponse,
    PartialItemFailures,
    has_pydantic,
)

__all__ = [
    "BatchSqsTypeModel",
    "BatchTypeModels",
    "PartialItemFailureResponse",
    "PartialItemFailures",
    "has_pydantic",
]

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import KafkaItemIdentifier as KafkaItemIdentifier
else:
    try:
        from aws_lambda_powertools.utilities.batch.types import KafkaItemIdentifier
    except ImportError:  # pragma: no cover - Powertools < 3.16 has no Kafka partial responses
        pass
    else:
        __all__ += ["KafkaItemIdentifier"]

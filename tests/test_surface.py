"""The whole public surface of Powertools' batch package is importable from observed_batch.

Compared against the installed Powertools, so a name a future Powertools adds fails here first.
"""

from __future__ import annotations

import types

import pytest
from aws_lambda_powertools.utilities import batch as pt
from aws_lambda_powertools.utilities.batch import types as pt_types

import observed_batch as ob
from observed_batch import types as ob_types

#: Ours on purpose: Powertools' classes with the middleware chain added (subclasses of Powertools').
OBSERVED_CLASSES = {
    "AsyncBatchProcessor",
    "BasePartialBatchProcessor",
    "BasePartialProcessor",
    "BatchProcessor",
    "SqsFifoPartialProcessor",
}


def _public_names_of_types_module() -> set[str]:
    """What ``...batch.types`` defines for its users (not what it imports for itself: sys, TypedDict)."""
    return {
        name
        for name, value in vars(pt_types).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", pt_types.__name__) == pt_types.__name__
        and name != "annotations"
    }


def test_every_powertools_batch_name_is_importable_from_observed_batch() -> None:
    # GIVEN the public names of the installed Powertools batch package
    # THEN observed_batch has each of them, and exports each in __all__
    assert set(pt.__all__) <= set(dir(ob))
    assert set(pt.__all__) <= set(ob.__all__)


@pytest.mark.parametrize("name", sorted(set(pt.__all__) - OBSERVED_CLASSES))
def test_data_and_typing_names_are_powertools_own_objects(name: str) -> None:
    # GIVEN a Powertools name that is not a processor
    # THEN observed_batch's is the very same object (annotations and isinstance checks agree)
    assert getattr(ob, name) is getattr(pt, name)


@pytest.mark.parametrize("name", sorted(OBSERVED_CLASSES))
def test_observed_classes_subclass_powertools_classes(name: str) -> None:
    # GIVEN one of our processor classes
    # THEN it is a subclass of the Powertools class of the same name
    assert issubclass(getattr(ob, name), getattr(pt, name))


def test_types_module_mirrors_powertools_types_module() -> None:
    # GIVEN the public names of Powertools' batch typing module
    names = _public_names_of_types_module()
    assert {"PartialItemFailureResponse", "PartialItemFailures", "BatchSqsTypeModel"} <= names

    # THEN observed_batch.types has each, as the same object, and exports each
    for name in names:
        assert getattr(ob_types, name) is getattr(pt_types, name), name
    assert names <= set(ob_types.__all__)


def test_our_processors_are_instances_of_our_bases_too() -> None:
    # GIVEN our processors
    processors = [ob.BatchProcessor(ob.EventType.SQS), ob.AsyncBatchProcessor(ob.EventType.SQS)]
    fifo = ob.SqsFifoPartialProcessor()

    # THEN isinstance against our bases holds as it does against Powertools' bases
    for processor in [*processors, fifo]:
        assert isinstance(processor, ob.BasePartialBatchProcessor)
        assert isinstance(processor, ob.BasePartialProcessor)
    assert issubclass(ob.BasePartialBatchProcessor, ob.BasePartialProcessor)

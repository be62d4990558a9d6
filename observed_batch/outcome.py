"""What the core decided for a record (``Outcome``), and the reasons and resolutions that qualify it.

Re-exported by ``observed_batch.typing`` (and ``Outcome`` by ``observed_batch``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["DEAD_LETTERED", "DROPPED", "FIFO_SHORT_CIRCUIT", "RESOLUTIONS", "Outcome"]


class Outcome(str):
    """What the core decided for a record: ``Outcome.SUCCESS``, ``FAILURE`` or ``SKIPPED``.

    Three singleton ``str`` constants (compare with ``is`` or ``==``), not an ``Enum``: on Python
    3.11 every ``SomeEnum.MEMBER`` lookup costs ~150 ns, and each record compares several times.
    """

    __slots__ = ()
    SUCCESS: ClassVar[Outcome]
    FAILURE: ClassVar[Outcome]
    #: Reported in batchItemFailures without the handler running (FIFO short-circuit, guards).
    SKIPPED: ClassVar[Outcome]

    def __repr__(self) -> str:
        return f"Outcome.{self.upper()}"


Outcome.SUCCESS = Outcome("success")
Outcome.FAILURE = Outcome("failure")
Outcome.SKIPPED = Outcome("skipped")


#: ``RecordContext.skip_reason`` for records Powertools' FIFO processor short-circuited.
FIFO_SHORT_CIRCUIT = "fifo_short_circuit"
#: How a policy middleware may resolve a failed record (``RecordContext.resolve``): the record is then
#: left out of ``batchItemFailures``.
DEAD_LETTERED = "dead_lettered"
DROPPED = "dropped"
RESOLUTIONS = (DEAD_LETTERED, DROPPED)

"""Errors the scheduler package raises on purpose; all derive from :class:`SchedulerError`.

``scheduler/`` is a pure library (numpy/scipy/stdlib, no I/O, no project imports), so
its root derives from :class:`Exception` directly rather than from the kernel's
``LearnstreamError``; callers that want to treat both alike catch the two roots.
"""

from __future__ import annotations

from collections.abc import Sequence


class SchedulerError(Exception):
    """Root of every error raised by ``scheduler/``."""


class DatasetFormatError(SchedulerError, ValueError):
    """A knowledge-tracing text does not follow its format (the message says where)."""


class PlacementError(SchedulerError, ValueError):
    """A placement step that cannot be applied: an item given twice, an item not in the
    bank, or a stored session that does not parse. The message names the item or field."""


class PrerequisiteCycleError(SchedulerError):
    """The prerequisite graph has a cycle, so no learning path exists.

    ``cycle`` lists the skills on one cycle in prerequisite order, the first
    skill repeated at the end (``("a", "b", "a")``: a is required by b, b by a).
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            "prerequisite graph has a cycle: "
            + " -> ".join(self.cycle)
            + " (each skill is a prerequisite of the next; remove one of these edges)"
        )


class ReviewStateError(SchedulerError):
    """A stored review state cannot be read by the scheduler asked to use it.

    Raised, for example, when a tenant switched from SM-2 to FSRS and an old SM-2
    state is handed to FSRS; the message names the algorithm found and the one expected.
    """

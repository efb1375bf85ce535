"""Errors of the stream processors.

Two kinds matter to the batch machinery in :mod:`processors.base`:

* :class:`PoisonEvent`: this one record can never be processed (bad bytes, a
  contract violation). It goes to the dead-letter topic and its offset counts as
  processed, so one bad record never blocks a partition.
* Transient errors (PostgreSQL or Kafka unreachable): nothing is committed and
  the batch is retried with backoff until the service returns;
  :func:`processors.base.is_transient` decides which errors those are.
"""

from __future__ import annotations

from learnstream.exceptions import LearnstreamError, ServiceUnavailableError


class ProcessorError(LearnstreamError):
    """Root of the errors a processor raises on purpose."""


class PoisonEvent(ProcessorError):
    """A record that no retry will fix; the message says what is wrong with it."""


class DeliveryFailed(ServiceUnavailableError, ProcessorError):
    """The broker did not acknowledge derived or dead-letter records; retried."""


class StaleWrite(ProcessorError):
    """A view row changed between this writer's read and its write (optimistic version).

    Another writer got there first, outside the per-partition locking discipline. The
    batch is rolled back and retried from a fresh read, like a serialization failure
    (:func:`processors.base.is_transient`); the error is logged and counted.
    """

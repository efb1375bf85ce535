"""Consumer lag and per-partition liveness of a worker, as Prometheus gauges.

Every ``processor_lag_interval_s`` a worker samples the partitions assigned to it:

* **lag** = end offset - next offset stored in ``processor_offsets`` (records not yet
  applied: what the views are behind, not merely what was fetched);
* **idle seconds** = time since the partition's stored offset last moved forward in
  this worker (since it was assigned here, for one that has not moved yet);
* **stalled** = 1 when lag > 0 and idle seconds >= ``processor_stall_after_s``: records
  wait and nothing is committed (PostgreSQL down, a poison loop, a stuck fetcher).
  An idle partition with no new records has lag 0 and is not stalled.

The end offset is the larger of two broker answers. On Apache Kafka both are the log
end offset. On the local Tansu broker (measured on v0.6.0) ``ListOffsets(latest)``
answers the base offset of the partition's last record batch plus one (2,941 for
3,000 records produced in batches), while the high watermark in fetch responses is
right but known only once this consumer fetched from the partition. Each alone
under-reports there; the maximum is right as soon as one fetch happened, and never
over-reports, so a non-zero lag is always real.

Each worker exports only its own partitions (label sets of partitions it lost are
removed), so ``sum by (topic)`` over workers gives the group's lag.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from processors import metrics
from processors.offsets import TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionHealth:
    """One assigned partition at one sample."""

    tp: TopicPartition
    end_offset: int | None  # None when the broker did not say
    next_offset: int  # stored in PostgreSQL; 0 before the first commit
    idle_s: float  # seconds since the stored offset last advanced (or since assignment)
    stalled: bool

    @property
    def lag(self) -> int | None:
        """Records not yet applied (>= 0), None when the end offset is unknown."""
        return None if self.end_offset is None else max(self.end_offset - self.next_offset, 0)


def end_offset(fetched_highwater: int | None, listed_end: int | None) -> int | None:
    """The best end offset from the two broker answers (see the module docstring)."""
    known = [value for value in (fetched_highwater, listed_end) if value is not None and value >= 0]
    return max(known) if known else None


class PartitionMonitor:
    """Keeps per-partition progress times and turns samples into gauges.

    ``clock`` returns seconds (monotonic); tests pass their own.
    """

    def __init__(
        self,
        processor: str,
        *,
        stall_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processor = processor
        self.stall_after_s = stall_after_s
        self._clock = clock
        # Per partition: the stored next offset last seen and when it last advanced.
        self._progress: dict[TopicPartition, tuple[int, float]] = {}
        self._exported: set[TopicPartition] = set()

    def committed(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Record a committed batch's stored next offsets (called after each commit)."""
        now = self._clock()
        for tp, offset in next_offsets.items():
            self._advance(tp, offset, now)

    def last_committed(self) -> dict[TopicPartition, int]:
        """The stored next offsets this worker last committed or observed, per partition."""
        return {tp: offset for tp, (offset, _) in self._progress.items()}

    def observe(
        self,
        assigned: Collection[TopicPartition],
        end_offsets: Mapping[TopicPartition, int | None],
        stored: Mapping[TopicPartition, int],
    ) -> list[PartitionHealth]:
        """Health of every assigned partition; sets the gauges and drops lost partitions.

        ``stored`` holds the next offsets in ``processor_offsets`` (a partition without a
        row is at 0); ``end_offsets`` the broker's end offsets (None when unknown).
        """
        now = self._clock()
        healths = []
        for tp in sorted(assigned):
            next_offset = stored.get(tp, 0)
            self._advance(tp, next_offset, now)
            _, advanced_at = self._progress[tp]
            idle_s = now - advanced_at
            end = end_offsets.get(tp)
            lagging = end is not None and end > next_offset
            healths.append(
                PartitionHealth(
                    tp, end, next_offset, idle_s, lagging and idle_s >= self.stall_after_s
                )
            )
        for tp in set(self._progress) - set(assigned):
            del self._progress[tp]  # assigned again later: idle counts from then
        self._export(healths)
        return healths

    def _advance(self, tp: TopicPartition, offset: int, now: float) -> None:
        seen = self._progress.get(tp)
        if seen is None or offset > seen[0]:
            self._progress[tp] = (offset, now)

    def _export(self, healths: list[PartitionHealth]) -> None:
        current = {h.tp for h in healths}
        for tp in self._exported - current:
            labels = (self.processor, tp.topic, str(tp.partition))
            for gauge in (
                metrics.CONSUMER_LAG,
                metrics.END_OFFSET,
                metrics.PARTITION_IDLE_SECONDS,
                metrics.PARTITION_STALLED,
            ):
                with contextlib.suppress(KeyError):  # never set for this partition
                    gauge.remove(*labels)
        for health in healths:
            labels = (self.processor, health.tp.topic, str(health.tp.partition))
            if health.end_offset is not None:
                metrics.END_OFFSET.labels(*labels).set(health.end_offset)
                metrics.CONSUMER_LAG.labels(*labels).set(health.lag or 0)
            metrics.PARTITION_IDLE_SECONDS.labels(*labels).set(health.idle_s)
            metrics.PARTITION_STALLED.labels(*labels).set(int(health.stalled))
            if health.stalled:
                log.warning(
                    "partition stalled: records waiting, nothing committed",
                    extra={
                        "processor": self.processor,
                        "topic": health.tp.topic,
                        "partition": health.tp.partition,
                        "offset": health.next_offset,
                        "lag": health.lag,
                        "idle_s": round(health.idle_s, 1),
                    },
                )
        metrics.ASSIGNED_PARTITIONS.labels(self.processor).set(len(healths))
        self._exported = current

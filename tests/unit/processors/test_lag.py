"""Lag and liveness of a worker's partitions (processors.lag), on a fake clock.

A partition that keeps committing is live; one with records waiting and no commit
for stall_after_s is stalled; an idle one (nothing to do) is never stalled; a
partition the worker lost disappears from the gauges; the end offset is the larger
of the two broker answers (Tansu under-reports ListOffsets).
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from processors.lag import PartitionMonitor, end_offset
from processors.offsets import TopicPartition

A0 = TopicPartition("a", 0)
A1 = TopicPartition("a", 1)


def gauge(name: str, tp: TopicPartition, processor: str) -> float | None:
    return REGISTRY.get_sample_value(
        name, {"processor": processor, "topic": tp.topic, "partition": str(tp.partition)}
    )


def test_end_offset_takes_the_larger_known_answer() -> None:
    assert end_offset(3000, 2941) == 3000
    assert end_offset(None, 2941) == 2941
    assert end_offset(-1, None) is None


def test_stall_needs_lag_and_no_progress_for_the_threshold() -> None:
    now = [100.0]
    monitor = PartitionMonitor("lagtest", stall_after_s=30.0, clock=lambda: now[0])
    health = monitor.observe([A0, A1], {A0: 50, A1: 7}, {A0: 10, A1: 7})
    assert [(h.lag, h.stalled) for h in health] == [(40, False), (0, False)]

    now[0] = 125.0
    monitor.committed({A0: 20})  # progress on A0
    now[0] = 150.0
    health = monitor.observe([A0, A1], {A0: 60, A1: 7}, {A0: 20, A1: 7})
    assert [(h.idle_s, h.stalled) for h in health] == [(25.0, False), (50.0, False)]

    now[0] = 160.0  # A0: 35 s without a commit and 40 records waiting
    health = monitor.observe([A0, A1], {A0: 60, A1: 7}, {A0: 20, A1: 7})
    assert [(h.lag, h.stalled) for h in health] == [(40, True), (0, False)]
    assert gauge("learnstream_processor_partition_stalled", A0, "lagtest") == 1.0
    assert gauge("learnstream_processor_consumer_lag", A0, "lagtest") == 40.0
    assert gauge("learnstream_processor_partition_idle_seconds", A1, "lagtest") == 60.0
    assert (
        REGISTRY.get_sample_value(
            "learnstream_processor_assigned_partitions", {"processor": "lagtest"}
        )
        == 2.0
    )


def test_lost_partitions_leave_the_gauges_and_restart_their_clock() -> None:
    now = [0.0]
    monitor = PartitionMonitor("losttest", stall_after_s=5.0, clock=lambda: now[0])
    monitor.observe([A0, A1], {A0: 9, A1: 9}, {A0: 0, A1: 0})
    now[0] = 10.0
    monitor.observe([A0], {A0: 9}, {A0: 0})
    assert gauge("learnstream_processor_consumer_lag", A1, "losttest") is None
    assert monitor.last_committed() == {A0: 0}
    now[0] = 12.0
    (_, again) = monitor.observe([A0, A1], {A0: 9, A1: 9}, {A0: 0, A1: 0})
    assert (again.idle_s, again.stalled) == (0.0, False)  # assigned anew just now

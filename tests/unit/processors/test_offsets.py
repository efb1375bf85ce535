"""Batch planning (which records to apply after a crash), derived ids, dead-letter records."""

from __future__ import annotations

import uuid

from learnstream.kafka import (
    DEADLETTER_ERROR_HEADER,
    DEADLETTER_ORIGIN_HEADER,
    DEADLETTER_PROCESSOR_HEADER,
)
from processors.offsets import (
    DERIVED_EVENT_NAMESPACE,
    MAX_ERROR_CHARS,
    OffsetGap,
    SourceRecord,
    TopicPartition,
    deadletter_record,
    derived_event_id,
    partitions_of,
    plan_batch,
)

TOPIC = "ns.attempts.v1"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def record(partition: int, offset: int) -> SourceRecord:
    return SourceRecord(TOPIC, partition, offset, b"k", f"{partition}@{offset}".encode())


def test_records_below_the_stored_offset_are_redelivered_and_skipped() -> None:
    batch = [record(0, o) for o in range(5, 10)] + [record(1, o) for o in range(0, 3)]
    plan = plan_batch(batch, {P0: 8, P1: 0})
    assert [(r.partition, r.offset) for r in plan.fresh] == [(0, 8), (0, 9), (1, 0), (1, 1), (1, 2)]
    assert [(r.partition, r.offset) for r in plan.redelivered] == [(0, 5), (0, 6), (0, 7)]
    assert plan.next_offsets == {P0: 10, P1: 3}
    assert plan.gaps == ()


def test_a_fully_redelivered_batch_applies_nothing_and_stores_nothing() -> None:
    plan = plan_batch([record(0, o) for o in range(3)], {P0: 3})
    assert plan.fresh == ()
    assert len(plan.redelivered) == 3
    assert plan.next_offsets == {}


def test_partition_without_a_stored_row_starts_at_zero_without_gap_warnings() -> None:
    plan = plan_batch([record(1, 40), record(1, 41)], {})
    assert [r.offset for r in plan.fresh] == [40, 41]
    assert plan.next_offsets == {P1: 42}
    assert plan.gaps == ()


def test_a_record_delivered_twice_in_one_batch_is_applied_once() -> None:
    batch = [record(0, 0), record(0, 1), record(0, 1), record(0, 0), record(0, 2)]
    plan = plan_batch(batch, {P0: 0})
    assert [r.offset for r in plan.fresh] == [0, 1, 2]
    assert [r.offset for r in plan.redelivered] == [1, 0]
    assert plan.next_offsets == {P0: 3}


def test_records_beyond_the_stored_offset_are_reported_as_a_gap() -> None:
    plan = plan_batch([record(0, 12), record(0, 13), record(1, 4)], {P0: 10, P1: 4})
    assert plan.gaps == (OffsetGap(P0, expected=10, received=12),)
    assert plan.next_offsets == {P0: 14, P1: 5}


def test_order_within_and_across_partitions_is_kept() -> None:
    batch = [record(1, 0), record(0, 0), record(1, 1), record(0, 1)]
    assert list(plan_batch(batch, {}).fresh) == batch


def test_partitions_are_listed_once_in_lock_order() -> None:
    batch = [record(1, 0), record(0, 3), record(1, 1)]
    assert partitions_of(batch) == [P0, P1]


def test_derived_event_id_is_a_pure_function_of_cause_and_kind() -> None:
    cause = str(uuid.uuid4())
    first = derived_event_id(cause, "mastery_updated")
    assert derived_event_id(cause, "mastery_updated") == first
    assert uuid.UUID(first).version == 5
    assert derived_event_id(cause, "gap_detected") != first
    assert derived_event_id(str(uuid.uuid4()), "mastery_updated") != first


def test_deadletter_record_keeps_the_original_and_says_why_and_where() -> None:
    original = SourceRecord(TOPIC, 3, 77, b"t:u", b"\xff", headers=(("trace", b"abc"),))
    dead = deadletter_record(
        original, error="x" * (MAX_ERROR_CHARS + 50), processor="mastery", deadletter_topic="dl"
    )
    headers = dict(dead.headers)
    assert (dead.topic, dead.key, dead.value) == ("dl", b"t:u", b"\xff")
    assert headers["trace"] == b"abc"
    assert headers[DEADLETTER_ORIGIN_HEADER] == b"ns.attempts.v1[3]@77"
    assert headers[DEADLETTER_PROCESSOR_HEADER] == b"mastery"
    assert len(headers[DEADLETTER_ERROR_HEADER]) == MAX_ERROR_CHARS


def test_deadletter_record_of_a_record_without_key_or_value() -> None:
    dead = deadletter_record(
        SourceRecord(TOPIC, 0, 1, None, None), error="empty", processor="p", deadletter_topic="dl"
    )
    assert (dead.key, dead.value) == (b"", b"")


def test_derived_event_id_is_uuid5_of_kind_and_cause() -> None:
    for _ in range(2_000):
        cause = str(uuid.uuid4())
        expected = uuid.uuid5(DERIVED_EVENT_NAMESPACE, f"mastery_updated:{cause}")
        assert derived_event_id(cause, "mastery_updated") == str(expected)

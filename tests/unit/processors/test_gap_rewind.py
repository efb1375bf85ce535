"""Offset gaps are held back and rewound, never applied past (processors.offsets.hold_back_gaps).

The case seen on the local broker after a takeover: the consumer starts a partition
beyond the offset PostgreSQL stored. The records from the gap on are held back,
one seek is asked for, records fetched before the seek are held back without a new
seek, the re-read from the stored offset flows again, and a re-read that still
starts beyond the stored offset is a real hole in the topic and is applied.
"""

from __future__ import annotations

from processors.offsets import (
    Rewind,
    SourceRecord,
    TopicPartition,
    hold_back_gaps,
    plan_batch,
)

TP0 = TopicPartition("a", 0)
TP1 = TopicPartition("a", 1)


def records(tp: TopicPartition, offsets: range | list[int]) -> list[SourceRecord]:
    return [SourceRecord(tp.topic, tp.partition, o, b"k", b"v") for o in offsets]


def test_records_beyond_a_gap_are_held_back_and_one_seek_is_asked() -> None:
    batch = records(TP0, range(50, 60)) + records(TP1, range(10, 15))
    held = hold_back_gaps(plan_batch(batch, {TP0: 20, TP1: 10}), {})
    assert [r.offset for r in held.plan.fresh] == list(range(10, 15))  # TP1 only
    assert held.plan.next_offsets == {TP1: 15}
    assert held.plan.gaps == ()
    assert held.seeks == (Rewind(TP0, 20, 59),)
    assert held.held_back == frozenset({TP0})
    assert held.held_records == 10
    assert held.pending == {TP0: Rewind(TP0, 20, 59)}


def test_records_fetched_before_the_seek_are_held_back_without_another_seek() -> None:
    pending = {TP0: Rewind(TP0, 20, 59)}
    held = hold_back_gaps(plan_batch(records(TP0, range(60, 70)), {TP0: 20}), pending)
    assert held.plan.fresh == ()
    assert held.seeks == ()
    assert held.pending == {TP0: Rewind(TP0, 20, 69)}
    assert held.held_back == frozenset({TP0})


def test_the_re_read_from_the_stored_offset_flows_and_ends_the_rewind() -> None:
    pending = {TP0: Rewind(TP0, 20, 69)}
    held = hold_back_gaps(plan_batch(records(TP0, range(20, 30)), {TP0: 20}), pending)
    assert [r.offset for r in held.plan.fresh] == list(range(20, 30))
    assert held.plan.next_offsets == {TP0: 30}
    assert (held.seeks, held.pending, held.held_back) == ((), {}, frozenset())


def test_a_re_read_that_still_starts_beyond_the_stored_offset_is_a_real_hole() -> None:
    pending = {TP0: Rewind(TP0, 20, 69)}
    held = hold_back_gaps(plan_batch(records(TP0, range(25, 30)), {TP0: 20}), pending)
    assert [r.offset for r in held.plan.fresh] == list(range(25, 30))
    assert [(g.expected, g.received) for g in held.plan.gaps] == [(20, 25)]  # logged
    assert held.pending == {}


def test_a_jump_inside_a_batch_keeps_the_records_before_it() -> None:
    batch = records(TP0, [20, 21, 22, 40, 41])
    held = hold_back_gaps(plan_batch(batch, {TP0: 20}), {})
    assert [r.offset for r in held.plan.fresh] == [20, 21, 22]
    assert held.plan.next_offsets == {TP0: 23}
    assert held.seeks == (Rewind(TP0, 23, 41),)


def test_partitions_without_a_stored_row_are_never_held_back() -> None:
    held = hold_back_gaps(plan_batch(records(TP0, range(5, 9)), {}), {})
    assert [r.offset for r in held.plan.fresh] == list(range(5, 9))
    assert held.seeks == ()

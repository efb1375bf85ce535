"""Replaying uncommitted lake batches, cut differently, leaves every record in one file.

The crash case of the lake sink without Kafka: batches of one partition are written
(files renamed into place), the process "dies" before committing some of them, and
the replay starts again at the last committed offset with batches of other sizes.
Records spread over several days and tenants, so files of one batch land in several
folders. Whatever the cuts, the lake must then hold each record exactly once, as the
uninterrupted run does.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from learnstream import lake
from processors.base import Decoded
from processors.events import Attempt
from processors.lake_sink import file_groups, write_groups
from processors.offsets import SourceRecord

TOPIC = "ns.attempts.v1"
T0 = datetime(2024, 3, 30, 22, 0, tzinfo=UTC)  # near midnight: batches span days


def stream(count: int, rng: random.Random) -> list[Decoded[Attempt]]:
    items = []
    for offset in range(count):
        tenant = rng.choice(["acme", "beta/school"])
        attempt = Attempt(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            tenant_id=tenant,
            user_id=f"u{rng.randrange(5)}",
            session_id="",
            skill_ids=("s",),
            correct=rng.random() < 0.6,
            score=1.0,
            # About two days of attempts: three event dates.
            occurred_at=T0 + timedelta(minutes=offset * 7),
            item_id=f"i{offset % 9}",
        )
        record = SourceRecord(TOPIC, 3, offset, b"k", b"v")
        items.append(Decoded(record, attempt))
    return items


def cuts(rng: random.Random, start: int, end: int) -> list[tuple[int, int]]:
    bounds = [start]
    while bounds[-1] < end:
        bounds.append(min(end, bounds[-1] + rng.randint(1, 40)))
    return list(itertools.pairwise(bounds))


def lake_rows(root: Path) -> list[tuple[str, int]]:
    table = lake.read_attempts(root, columns=["event_id", "kafka_offset"])
    return sorted(
        zip(table["event_id"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


@pytest.mark.parametrize("seed", range(12))
def test_replays_cut_differently_leave_each_record_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    items = stream(400, rng)
    committed = 0
    # First run: commits some batches, then writes a few more and "crashes".
    for start, end in cuts(rng, 0, 400):
        write_groups(tmp_path, file_groups(items[start:end]))
        if rng.random() < 0.5 and start < 300:
            committed = end
        elif start > 100 and rng.random() < 0.2:
            break
    # Replay from the committed offset with other cuts, to the end.
    for start, end in cuts(rng, committed, 400):
        write_groups(tmp_path, file_groups(items[start:end]))
    expected = sorted((i.event.event_id, i.record.offset) for i in items)
    assert lake_rows(tmp_path) == expected


def test_one_file_per_partition_day_and_tenant(tmp_path: Path) -> None:
    items = stream(300, random.Random(7))
    groups = file_groups(items)
    written = write_groups(tmp_path, groups)
    assert len(written) == len(groups)
    days = {i.event.occurred_at.date() for i in items}
    tenants = {i.event.tenant_id for i in items}
    assert len(groups) == len(days) * len(tenants)
    for path in written:
        assert path.name == lake.part_file_name(TOPIC, 3, int(path.name.split("-")[-1][:20]))


def test_replay_whose_first_batch_misses_a_folder_of_the_crashed_batch(tmp_path: Path) -> None:
    # The crashed batch [0, 20) spans two days; the replay's first batch [0, 5) has only
    # the first day. Named after the batch's first offset, the crashed batch's file of
    # the second day would be "part-...-0" and survive the replay: its rows twice.
    items = stream(20, random.Random(3))
    day = [i.event.occurred_at.date() for i in items]
    assert day[0] != day[-1]
    first_day = sum(d == day[0] for d in day)
    write_groups(tmp_path, file_groups(items))  # crashed: never committed
    write_groups(tmp_path, file_groups(items[: first_day - 1]))
    write_groups(tmp_path, file_groups(items[first_day - 1 :]))
    assert lake_rows(tmp_path) == sorted((i.event.event_id, i.record.offset) for i in items)

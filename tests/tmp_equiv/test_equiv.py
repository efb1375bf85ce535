"""TEMPORARY: old vs new fraud processor on the same random batches (not committed)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from learnstream.settings import Settings
from processors import fraud as new_fraud
from processors.base import Decoded
from processors.events import Attempt
from processors.offsets import SourceRecord
from tests.conftest import empty_tables
from tests.tmp_equiv import old_fraud

T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)


def events(seed: int, mod: object) -> list[object]:
    rng = random.Random(seed)
    out: list[object] = []
    at = T0
    for n in range(700):
        at += timedelta(seconds=rng.choice([1, 2, 5, 30, 120]))
        if rng.random() < 0.2:
            out.append(
                mod.SessionSighting(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    tenant_id="t",
                    user_id=f"u{rng.randrange(8)}",
                    session_id=f"s{rng.randrange(6)}",
                    device_id=f"d{rng.randrange(2)}",
                    occurred_at=at,
                )
            )
            continue
        correct = rng.random() < 0.5
        item = f"i{rng.randrange(3)}"
        out.append(
            mod.ScoredAttempt(
                attempt=Attempt(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    tenant_id="t",
                    user_id=f"u{rng.randrange(8)}",
                    session_id=f"s{rng.randrange(3)}",
                    skill_ids=(f"k{rng.randrange(2)}",),
                    correct=correct,
                    score=float(correct),
                    occurred_at=at,
                    item_id=item,
                ),
                item_id=item,
                response=None if correct else (rng.choice(["a", "b"]) if rng.random() < 0.1 else f"r{rng.randrange(40)}"),
                response_time_ms=rng.choice([0, 150, 900, 5000, 20000]),
            )
        )
    # A few replays.
    out.extend(rng.sample(out, 20))
    return out


async def run(processor: object, pool: asyncpg.Pool, evs: list[object], seed: int) -> tuple[list, list]:
    rng = random.Random(seed + 1)
    records = []
    i = 0
    while i < len(evs):
        size = rng.randint(1, 40)
        chunk = evs[i : i + size]
        i += size
        batch = [Decoded(SourceRecord("x", 0, n, None, None), e) for n, e in enumerate(chunk)]
        async with pool.acquire() as conn, conn.transaction():
            out = await processor.apply(conn, batch)  # type: ignore[attr-defined]
        records.extend((r.topic, r.key, r.value) for r in out)
    rows = await pool.fetch(
        "SELECT * FROM fraud_signals ORDER BY tenant_id, subject_kind, subject_id"
    )
    table = [{k: v for k, v in dict(r).items() if k not in ("updated_at", "version")} for r in rows]
    for name in ("fraud_learner_history", "fraud_reference_stats", "fraud_wrong_answer_counts",
                 "fraud_group_wrong_answers", "fraud_collusion_partners", "fraud_device_sessions"):
        table.append({"t": name, "rows": sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {name}"))})
    return records, table


async def test_old_and_new_score_identically(db_pool: asyncpg.Pool, settings: Settings) -> None:
    for seed in (1, 2, 3):
        await empty_tables(settings)
        old = await run(old_fraud.FraudProcessor(settings), db_pool, events(seed, old_fraud), seed)
        await empty_tables(settings)
        new = await run(new_fraud.FraudProcessor(settings), db_pool, events(seed, new_fraud), seed)
        assert len(old[0]) > 20
        print(seed, len(old[0]), len(old[1]), sum(1 for r in old[1] if r.get("w_collusion", 0) > 0), sum(1 for r in old[1] if r.get("w_shared_device", 0) > 0), sum(1 for r in old[1] if r.get("w_rapid_response", 0) > 0), sum(1 for r in old[1] if r.get("w_velocity", 0) > 0), sum(1 for r in old[1] if r.get("w_person_misfit", 0) > 0))
        assert old[0] == new[0]
        assert old[1] == new[1]

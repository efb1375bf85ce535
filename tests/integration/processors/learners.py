"""Real attempts with item ids, and independent oracles of every learner-state view.

The attempts come from the AKT split of ASSISTments 2009 (4-line format: index,user /
problem ids / skill ids / 0-1), the only file with both problem and skill ids for
thousands of learners. Learners alternate between two tenants (one on FSRS, one on
SM-2), answers interleave across learners as they would live, response times are
spread deterministically over fluent/ordinary/laboured answers, and event times
start shortly before a month boundary so two monthly partitions are needed.

The oracles use scheduler/ directly, never the processor: BKT per skill with the
given parameters, EAP ability from all answers at once, and a review replay per item.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from learnstream.events.v1 import attempt_pb2, envelope_pb2
from learnstream.kafka import learner_key
from processors.bkt_chain import clamp_probability
from scheduler import irt, srs
from scheduler.bkt import DEFAULT_PARAMS, BKTParams, update

AKT_FILE = Path("assistments2009_akt_pid") / "assist2009_pid_train1.csv"
TENANTS = ("tenant-fsrs", "tenant-sm2")
SCHEDULERS = {"tenant-fsrs": "fsrs", "tenant-sm2": "sm2"}
# An hour before April: attempts 2 s apart cross into the next monthly partition.
T0 = datetime(2024, 3, 31, 23, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("8a1d6a52-4a43-4f7e-9f4b-1f7c3b2d0e11")


@dataclass(frozen=True, slots=True)
class ItemAttempt:
    """One attempt to produce, with everything the oracles need."""

    event_id: str
    tenant_id: str
    user_id: str
    item_id: str
    skill_ids: tuple[str, ...]
    correct: bool
    occurred_at: datetime
    response_time_ms: int
    score: float | None = None  # partial credit; None means 1/0 from correct

    @property
    def credit(self) -> float:
        return self.score if self.score is not None else float(self.correct)

    def key(self) -> bytes:
        return learner_key(self.tenant_id, self.user_id)

    def value(self) -> bytes:
        envelope = envelope_pb2.Envelope(
            event_id=self.event_id, tenant_id=self.tenant_id, user_id=self.user_id
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        event = attempt_pb2.AttemptEvent(
            envelope=envelope,
            item_id=self.item_id,
            skill_ids=self.skill_ids,
            correct=self.correct,
            response_time_ms=self.response_time_ms,
        )
        if self.score is not None:
            event.score = self.score
        return event.SerializeToString()


def read_item_attempts(path: Path, *, learners: int, limit: int) -> list[ItemAttempt]:
    """Up to ``limit`` real attempts of the first ``learners`` learners, interleaved."""
    lines = path.read_text().split()
    sequences: list[list[tuple[str, str, bool]]] = []
    for start in range(0, len(lines) - 3, 4):
        if len(sequences) == learners:
            break
        problems, skills, flags = (lines[start + n].split(",") for n in (1, 2, 3))
        sequences.append(
            [(p, s, f == "1") for p, s, f in zip(problems, skills, flags, strict=False)]
        )
    attempts: list[ItemAttempt] = []
    step = 0
    while len(attempts) < limit and any(step < len(s) for s in sequences):
        for number, sequence in enumerate(sequences):
            if step >= len(sequence) or len(attempts) >= limit:
                continue
            problem, skill, correct = sequence[step]
            index = len(attempts)
            spread = zlib.crc32(f"{number}:{step}".encode())
            attempts.append(
                ItemAttempt(
                    event_id=str(uuid.uuid5(_NAMESPACE, f"{number}:{step}")),
                    tenant_id=TENANTS[number % 2],
                    user_id=f"learner-{number}",
                    item_id=f"problem-{problem}",
                    skill_ids=(f"skill-{skill}",),
                    correct=correct,
                    occurred_at=T0 + timedelta(seconds=2 * index),
                    response_time_ms=1_500 + spread % 40_000,
                    # Every 17th answer has partial credit (a wrong answer, half right).
                    score=0.5 if spread % 17 == 0 and not correct else None,
                )
            )
        step += 1
    return attempts


def fitted_parameters(attempts: Sequence[ItemAttempt]) -> dict[tuple[str, str], BKTParams]:
    """'Fitted' BKT parameters for every third skill of each tenant (others default)."""
    skills = sorted({(a.tenant_id, s) for a in attempts for s in a.skill_ids})
    return {
        key: BKTParams(
            prior=0.1 + 0.05 * (n % 5), learn=0.1 + 0.03 * (n % 4), guess=0.15, slip=0.08
        )
        for n, key in enumerate(skills)
        if n % 3 == 0
    }


def calibrated_items(attempts: Sequence[ItemAttempt]) -> dict[tuple[str, str], tuple[float, ...]]:
    """IRT (a, b, c) for about two thirds of the items; the rest stay uncalibrated."""
    items = sorted({(a.tenant_id, a.item_id) for a in attempts})
    return {
        key: (0.6 + 0.1 * (n % 12), -2.0 + 0.25 * (n % 17), 0.15 if n % 5 == 0 else 0.0)
        for n, key in enumerate(items)
        if n % 3 != 0
    }


async def write_parameters(
    pool: asyncpg.Pool,
    bkt: Mapping[tuple[str, str], BKTParams],
    items: Mapping[tuple[str, str], tuple[float, ...]],
) -> None:
    """Fill bkt_parameters, irt_item_parameters and tenant_settings as the DAGs would."""
    await pool.executemany(
        "INSERT INTO bkt_parameters (tenant_id, skill_id, prior, learn, guess, slip, forget) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(t, s, p.prior, p.learn, p.guess, p.slip, p.forget) for (t, s), p in bkt.items()],
    )
    await pool.executemany(
        "INSERT INTO irt_item_parameters (tenant_id, item_id, a, b, c) VALUES ($1, $2, $3, $4, $5)",
        [(t, i, *abc) for (t, i), abc in items.items()],
    )
    await pool.executemany(
        "INSERT INTO tenant_settings (tenant_id, scheduler) VALUES ($1, $2)",
        list(SCHEDULERS.items()),
    )


MasteryRow = tuple[float, int, int]


def expected_mastery(
    attempts: Sequence[ItemAttempt], bkt: Mapping[tuple[str, str], BKTParams]
) -> dict[tuple[str, str, str], MasteryRow]:
    """(p_mastery, attempts, correct) per learner and skill: a plain BKT loop."""
    rows: dict[tuple[str, str, str], MasteryRow] = {}
    for a in attempts:
        for skill in a.skill_ids:
            params = bkt.get((a.tenant_id, skill), DEFAULT_PARAMS)
            p, count, correct = rows.get((a.tenant_id, a.user_id, skill), (params.prior, 0, 0))
            rows[(a.tenant_id, a.user_id, skill)] = (
                clamp_probability(update(p, a.credit, params)),
                count + 1,
                correct + int(a.correct),
            )
    return rows


def expected_ability(
    attempts: Sequence[ItemAttempt], items: Mapping[tuple[str, str], tuple[float, ...]]
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(ability, ability_se, n_responses) per learner: EAP from all calibrated answers."""
    answered: dict[tuple[str, str], list[ItemAttempt]] = {}
    for a in attempts:
        if (a.tenant_id, a.item_id) in items:
            answered.setdefault((a.tenant_id, a.user_id), []).append(a)
    expected = {}
    for learner, answers in answered.items():
        params = np.array([items[(a.tenant_id, a.item_id)] for a in answers])
        bank = irt.ItemBank(a=params[:, 0], b=params[:, 1], c=params[:, 2])
        estimate = irt.estimate_eap(bank, np.arange(len(answers)), [a.credit for a in answers])
        expected[learner] = (estimate.ability, estimate.ability_se, len(answers))
    return expected


ReviewRow = tuple[str, dict[str, Any], datetime, int]


def expected_reviews(attempts: Sequence[ItemAttempt]) -> dict[tuple[str, str, str], ReviewRow]:
    """(algorithm, state, due_at, reviews) per learner and item: a plain scheduler replay."""
    states: dict[tuple[str, str, str], tuple[Any, datetime, int]] = {}
    for a in attempts:
        scheduler = srs.make_scheduler(SCHEDULERS[a.tenant_id])
        key = (a.tenant_id, a.user_id, a.item_id)
        state, _, count = states.get(key, (scheduler.new_state(), T0, 0))
        scheduled = scheduler.review(
            state,
            srs.Attempt(a.correct, a.response_time_ms, 0, a.score),
            a.occurred_at,
        )
        states[key] = (scheduled.state, scheduled.due_at, count + 1)
    return {
        key: (
            SCHEDULERS[key[0]],
            srs.make_scheduler(SCHEDULERS[key[0]]).state_to_dict(state),
            due,
            count,
        )
        for key, (state, due, count) in states.items()
    }


async def stored_mastery(pool: asyncpg.Pool) -> dict[tuple[str, str, str], MasteryRow]:
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, skill_id, p_mastery, attempts, correct FROM skill_mastery"
    )
    return {
        (r["tenant_id"], r["user_id"], r["skill_id"]): (r["p_mastery"], r["attempts"], r["correct"])
        for r in rows
    }


async def stored_ability(pool: asyncpg.Pool) -> dict[tuple[str, str], tuple[float, float, int]]:
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, ability, ability_se, n_responses FROM learner_ability"
    )
    return {
        (r["tenant_id"], r["user_id"]): (r["ability"], r["ability_se"], r["n_responses"])
        for r in rows
    }


async def stored_reviews(pool: asyncpg.Pool) -> dict[tuple[str, str, str], ReviewRow]:
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, item_id, algorithm, state, due_at, reviews FROM review_schedule"
    )
    return {
        (r["tenant_id"], r["user_id"], r["item_id"]): (
            r["algorithm"],
            json.loads(r["state"]),
            r["due_at"],
            r["reviews"],
        )
        for r in rows
    }


async def stored_attempts(pool: asyncpg.Pool) -> dict[str, tuple[str, str, float, datetime]]:
    """event_id -> (tenant, item, score, occurred_at) of every recorded attempt."""
    rows = await pool.fetch("SELECT event_id, tenant_id, item_id, score, occurred_at FROM attempts")
    return {
        str(r["event_id"]): (r["tenant_id"], r["item_id"], r["score"], r["occurred_at"])
        for r in rows
    }


async def attempt_partitions(pool: asyncpg.Pool) -> dict[str, int]:
    """Partition name -> rows, for the partitions of ``attempts`` that hold rows."""
    rows = await pool.fetch(
        "SELECT tableoid::regclass::text AS name, count(*) AS n FROM attempts GROUP BY 1"
    )
    return {r["name"]: int(r["n"]) for r in rows}

"""What ``make demo`` seeds before the replay: CMS content and calibrated parameters.

* Content goes through the CMS services as production writes it: the tenant, one skill
  per replayed skill id, and one question per replayed item id (the ids the events
  carry, so the processors match them), each moved draft -> in_review -> approved ->
  published by a demo author and a different demo reviewer.
* IRT item parameters and BKT skill parameters are computed by the calibration jobs'
  own functions (:mod:`ml.jobs.irt_calibration`, :mod:`ml.jobs.bkt_fit`) from the
  replayed answers themselves and published with the jobs' publish steps. In
  production the DAGs calibrate from the lake instead; here the demo would otherwise
  start with an empty lake and no parameters.

Both steps are idempotent: existing rows are kept (content) or upserted (parameters).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pyarrow as pa

from api.exceptions import ConflictError, NotFoundError
from api.services import accounts, content, skills
from api.services.principals import Principal, PrincipalKind, Role
from infra.replay import ReplayAttempt
from learnstream import db, lake
from learnstream.events.v1 import ingest_pb2
from learnstream.settings import Settings
from ml.jobs import bkt_fit, irt_calibration
from ml.jobs.common import Interval

# Fixed ids, so the demo's staff are the same people on every run.
AUTHOR_ID = "00000000-0000-4000-8000-00000000a001"
REVIEWER_ID = "00000000-0000-4000-8000-00000000a002"
CALIBRATION_RUN_ID = "demo-calibration-on-replayed-data"
# Concurrent connections publishing the catalog (thousands of items for the AKT data).
SEED_WORKERS = 6
# The rest of the workflow from each status (a re-run resumes an interrupted seed).
_NEXT_STEPS = {
    content.ContentStatus.DRAFT: (
        content.ContentStatus.IN_REVIEW,
        content.ContentStatus.APPROVED,
        content.ContentStatus.PUBLISHED,
    ),
    content.ContentStatus.IN_REVIEW: (
        content.ContentStatus.APPROVED,
        content.ContentStatus.PUBLISHED,
    ),
    content.ContentStatus.APPROVED: (content.ContentStatus.PUBLISHED,),
}


@dataclass(frozen=True, slots=True)
class SeedCounts:
    """What the seed left in place: published items, IRT items and BKT skills."""

    skills: int
    published_items: int
    irt_items: int
    bkt_skills: int


async def publish_item(
    pool: asyncpg.Pool,
    author: Principal,
    reviewer: Principal,
    item_id: str,
    item_skill_ids: tuple[str, ...],
    *,
    now: datetime,
) -> None:
    """One question for ``item_id``, moved on to published from wherever it stands."""
    try:
        status = (await content.get_item(pool, author, item_id=item_id)).status
    except NotFoundError:
        await content.create_item(
            pool,
            author,
            item_id=item_id,
            kind=content.ContentKind.QUESTION,
            title=f"Problem {item_id}",
            skill_ids=list(item_skill_ids),
            # The dataset has ids and outcomes, not the problems' text.
            payload={
                "prompt": f"Problem {item_id} of the replayed dataset "
                f"({', '.join(item_skill_ids)}); its text is not in the dataset.",
                "answer_key": ["not in the dataset"],
            },
            now=now,
        )
        status = content.ContentStatus.DRAFT
    for target in _NEXT_STEPS.get(status, ()):
        who = author if target is content.ContentStatus.IN_REVIEW else reviewer
        await content.transition_item(
            pool, who, item_id=item_id, target=target, comment="demo seed", now=now
        )


async def publish_catalog(
    pool: asyncpg.Pool, tenant_id: str, attempts: Sequence[ReplayAttempt]
) -> tuple[int, int]:
    """Tenant, skills and one published question per item id; returns (skills, items)."""
    author = Principal(tenant_id, AUTHOR_ID, PrincipalKind.USER, frozenset({Role.AUTHOR}))
    reviewer = Principal(tenant_id, REVIEWER_ID, PrincipalKind.USER, frozenset({Role.REVIEWER}))
    with contextlib.suppress(ConflictError):  # an earlier run created it
        await accounts.create_tenant(pool, tenant_id=tenant_id, name=f"{tenant_id} (demo)")
    now = datetime.now(UTC)
    skill_ids = sorted({skill for a in attempts for skill in a.skill_ids})
    for skill_id in skill_ids:
        if await skills.get_skill(pool, tenant_id=tenant_id, skill_id=skill_id) is None:
            await skills.create_skill(
                pool,
                tenant_id=tenant_id,
                skill_id=skill_id,
                name=skill_id,
                description="from the replayed dataset",
                prerequisites=[],
                now=now,
            )
    item_skills: dict[str, tuple[str, ...]] = {}
    for attempt in attempts:
        item_skills.setdefault(attempt.item_id, attempt.skill_ids)
    queue = list(item_skills.items())

    async def publish_some(worker: int) -> None:
        # Items are independent: SEED_WORKERS connections publish disjoint slices.
        for item_id, item_skill_ids in queue[worker::SEED_WORKERS]:
            await publish_item(pool, author, reviewer, item_id, item_skill_ids, now=now)

    await asyncio.gather(*(publish_some(worker) for worker in range(SEED_WORKERS)))
    return len(skill_ids), len(item_skills)


def lake_rows(
    attempts: Sequence[ReplayAttempt], events: Sequence[ingest_pb2.LearningEvent]
) -> pa.Table:
    """The answers as lake rows (event ids as the replay sends them, offset = log order)."""
    return lake.attempts_table(
        lake.LakeAttempt(
            event_id=event.attempt.envelope.event_id,
            tenant_id=event.attempt.envelope.tenant_id,
            user_id=attempt.user_id,
            occurred_at=attempt.occurred_at,
            item_id=attempt.item_id,
            skill_ids=attempt.skill_ids,
            correct=attempt.correct,
            kafka_partition=0,
            kafka_offset=offset,
        )
        for offset, (attempt, event) in enumerate(zip(attempts, events, strict=True))
    )


def calibrate_on_replay(
    settings: Settings,
    attempts: Sequence[ReplayAttempt],
    events: Sequence[ingest_pb2.LearningEvent],
    item_corpus: pa.Table | None = None,
) -> tuple[int, int]:
    """Fit IRT items and BKT skills on the replayed answers; publish; returns (items, skills).

    IRT items are fitted on ``item_corpus`` (lake rows, :func:`lake_rows`) when given:
    more answers to the same items than the replay has. The jobs' hand-off files go to a
    temporary folder and the jobs' publish steps upsert them. Blocking (the publish
    steps run their own loop).
    """
    table = lake_rows(attempts, events)
    if table.num_rows == 0:
        return 0, 0
    times = [a.occurred_at for a in attempts]
    interval = Interval(min(times), max(times) + timedelta(minutes=1))
    with tempfile.TemporaryDirectory(prefix="learnstream-demo-calibration-") as folder:
        hand_off = settings.model_copy(update={"data_dir": Path(folder)})
        items = irt_calibration.calibrate_attempts(
            table if item_corpus is None else item_corpus, irt_calibration.CalibrationOptions()
        )
        lake.write_table_atomically(items, irt_calibration.parameters_path(hand_off, interval))
        irt_items = irt_calibration.publish_item_parameters(hand_off, interval, CALIBRATION_RUN_ID)
        fitted = pa.Table.from_pylist(
            bkt_fit.fit_tenant(table, bkt_fit.BKTFitOptions()), schema=bkt_fit.PARAMETER_SCHEMA
        )
        lake.write_table_atomically(fitted, bkt_fit.parameters_path(hand_off, interval))
        bkt_skills = bkt_fit.publish_bkt_parameters(hand_off, interval, CALIBRATION_RUN_ID)
    return irt_items, bkt_skills


async def seed(
    settings: Settings,
    tenant_id: str,
    attempts: Sequence[ReplayAttempt],
    events: Sequence[ingest_pb2.LearningEvent],
    item_corpus: pa.Table | None = None,
) -> SeedCounts:
    """Publish the catalog and the calibrated parameters for ``tenant_id`` (idempotent).

    ``item_corpus``: lake rows to calibrate IRT items on instead of the replayed answers.
    """
    pool = await db.create_pool(settings, max_size=SEED_WORKERS)
    try:
        skill_count, item_count = await publish_catalog(pool, tenant_id, attempts)
    finally:
        await pool.close()
    irt_items, bkt_skills = await asyncio.to_thread(
        calibrate_on_replay, settings, attempts, events, item_corpus
    )
    return SeedCounts(skill_count, item_count, irt_items, bkt_skills)

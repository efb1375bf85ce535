"""Placement tests over HTTP: a computer-adaptive test whose result seeds the learner's state.

The test (:mod:`scheduler.cat`) draws from the tenant's *published questions that have
calibrated IRT parameters* (``irt_item_parameters``, filled by the calibration DAG);
a question without parameters, or without a skill, is not in the bank. Each item
counts for its first skill. Items are balanced across skills (equal shares), picked by
maximum information with randomesque exposure control, and the test stops at
``placement_max_items`` answers or once the ability SE reaches ``placement_se_target``.

Session state lives in Redis under ``<namespace>:placement:<tenant>:<account>`` with a
TTL that resuming, reading and answering renew: the CAT state, the bank snapshot the
session started with (item ids, skills, a, b, c: indices stay valid if content changes
meanwhile), the item being asked, and the seed of its random picks. Each step replaces
the stored value only if it is still the one the step read (compare-and-set), so a
double-submitted answer is refused instead of counted twice. The server grades answers
against the question's answer key; the key never leaves the server.

When the test ends, one PostgreSQL transaction writes the result (``placement_results``),
the seeds and the onboarding step; then a ``PlacementEvent`` goes to the placements
topic. No processor consumes placements yet, so the API writes the seeds itself,
through the tables and the version discipline the processors use:

* ``learner_ability``: the placement answers are evidence like any other answer, so
  they are added to the learner's stored posterior (the prior on its grid for a new
  learner) with :func:`scheduler.irt.update_posterior`; ``version`` goes up by one.
* ``skill_mastery``: skills without a row get the CAT's starting mastery with the
  placement answers on that skill as attempts; rows that exist are evidence from
  practice and are left alone.

Then the learner's Redis hot-cache fields for those rows are dropped (readers fall back
to PostgreSQL). A placement_id is written once (``ON CONFLICT DO NOTHING``): a second
finisher of the same session seeds nothing. If the broker does not acknowledge the
event, ``event_published_at`` stays NULL and reading the result retries the publish.
"""

from __future__ import annotations

import json
import secrets
import unicodedata
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from redis.asyncio import Redis

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services import learner_ids
from api.services.events import EventPublisher
from api.services.identifiers import is_uuid
from api.services.transactions import transaction
from learnstream import redis_keys
from learnstream.events.v1 import placement_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from scheduler import cat, irt

SOURCE_APP = "learnstream-api"
# CatConfig's minimum test length; smaller banks or max_items shorten it.
MIN_ITEMS = 5
# The grid a learner without a learner_ability row starts from; the learner-state
# processor's DEFAULT_PRIOR, so its later answers continue on the same grid.
DEFAULT_PRIOR = irt.NormalPrior()

# Replace KEYS[1] with ARGV[2] (TTL ARGV[3] s) only if it still holds ARGV[1]; delete it
# instead when ARGV[2] is empty. Returns 1 if done.
_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3])) end
return 1
"""


# --- pure parts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BankItem:
    """One calibrated question: a > 0, b (logits), c in [0, 1); ``skill_id`` its first skill."""

    item_id: str
    skill_id: str
    a: float
    b: float
    c: float


@dataclass(frozen=True, slots=True)
class PlacementSession:
    """A placement test in progress, as stored in Redis. Times are UTC."""

    placement_id: str
    tenant_id: str
    user_id: str  # the account taking the test
    learner_id: str  # the id its views are filed under
    started_at: datetime
    bank: tuple[BankItem, ...]
    state: cat.CatState
    current: int | None  # bank index of the question awaiting an answer
    seed: int  # of the randomesque picks: step k draws from default_rng([seed, k])

    def to_json(self) -> str:
        """The stored form (JSON text)."""
        return json.dumps(
            {
                "placement_id": self.placement_id,
                "tenant_id": self.tenant_id,
                "user_id": self.user_id,
                "learner_id": self.learner_id,
                "started_at": self.started_at.isoformat(),
                "bank": {
                    "item_ids": [i.item_id for i in self.bank],
                    "skill_ids": [i.skill_id for i in self.bank],
                    "a": [i.a for i in self.bank],
                    "b": [i.b for i in self.bank],
                    "c": [i.c for i in self.bank],
                },
                "state": self.state.to_dict(),
                "current": self.current,
                "seed": self.seed,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PlacementSession:
        """Inverse of :meth:`to_json`; PlacementError if the stored value does not parse."""
        try:
            raw = json.loads(text)
            bank = raw["bank"]
            return cls(
                placement_id=str(raw["placement_id"]),
                tenant_id=str(raw["tenant_id"]),
                user_id=str(raw["user_id"]),
                learner_id=str(raw["learner_id"]),
                started_at=datetime.fromisoformat(raw["started_at"]),
                bank=tuple(
                    BankItem(str(i), str(s), float(a), float(b), float(c))
                    for i, s, a, b, c in zip(
                        bank["item_ids"],
                        bank["skill_ids"],
                        bank["a"],
                        bank["b"],
                        bank["c"],
                        strict=True,
                    )
                ),
                state=cat.CatState.from_dict(raw["state"]),
                current=None if raw["current"] is None else int(raw["current"]),
                seed=int(raw["seed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise cat.PlacementError(f"stored placement session does not parse: {exc}") from exc

    def cat_bank(self) -> cat.CatBank:
        """The session's bank as the CAT needs it."""
        return cat_bank(self.bank)


def cat_bank(items: Sequence[BankItem]) -> cat.CatBank:
    """A :class:`scheduler.cat.CatBank` of ``items`` (in order, so indices match)."""
    return cat.CatBank(
        irt.ItemBank(
            np.array([i.a for i in items]),
            np.array([i.b for i in items]),
            np.array([i.c for i in items]),
        ),
        tuple(i.skill_id for i in items),
    )


def placement_config(bank: Sequence[BankItem], settings: Settings) -> cat.CatConfig:
    """Stopping rule from settings, equal shares per skill of the bank."""
    max_items = min(settings.placement_max_items, len(bank))
    skills = sorted({i.skill_id for i in bank})
    return cat.CatConfig.with_targets(
        dict.fromkeys(skills, 1.0),
        se_target=settings.placement_se_target,
        min_items=min(MIN_ITEMS, max_items),
        max_items=max_items,
    )


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The random source of the pick after ``step`` answers: the same on a replayed step."""
    return np.random.default_rng([seed, step])


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def grade(payload: Mapping[str, Any], response: str) -> bool:
    """True if ``response`` matches one of the question's ``answer_key`` entries.

    Matching ignores case, Unicode compatibility forms and runs of white space. For a
    multiple-choice question the response must be one of the choices (InvalidInputError,
    naming ``body.response``, otherwise).
    """
    given = _normalised(response)
    choices = payload.get("choices")
    if choices and given not in {_normalised(c) for c in choices}:
        raise InvalidInputError(
            "answer with one of the question's choices",
            field="body.response",
            reason="not one of the choices",
        )
    return given in {_normalised(k) for k in payload.get("answer_key", [])}


def ability_after(
    stored: irt.AbilityPosterior | None,
    answers: Sequence[tuple[BankItem, bool]],
    prior: irt.NormalPrior = DEFAULT_PRIOR,
) -> irt.AbilityPosterior:
    """The ability posterior after the placement ``answers``, on the stored grid.

    ``stored`` is the learner's posterior from ``learner_ability`` (None: a new learner,
    who starts from ``prior``). The log density is shifted to a maximum of 0, as the
    learner-state processor stores it.
    """
    posterior = stored if stored is not None else irt.initial_posterior(prior)
    for item, correct in answers:
        posterior = irt.update_posterior(posterior, item.a, item.b, item.c, float(correct))
    return irt.AbilityPosterior(
        posterior.points,
        posterior.log_density - posterior.log_density.max(),
        posterior.n_responses,
    )


def answers_of(session: PlacementSession) -> list[tuple[BankItem, bool]]:
    """The session's (question, correct) pairs in the order they were answered."""
    return [
        (session.bank[index], correct)
        for index, correct in zip(session.state.items, session.state.responses, strict=True)
    ]


# --- results and their public shape ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    """A question as the learner sees it: never the answer key."""

    item_id: str
    version: int
    title: str
    prompt: str
    choices: tuple[str, ...] | None
    skill_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlacementResult:
    """A finished placement test. ``ability``/``ability_se`` in logits; times UTC."""

    placement_id: str
    user_id: str
    learner_id: str
    ability: float
    ability_se: float
    items_administered: int
    correct: int
    stop_reason: str
    skill_estimates: dict[str, float]  # skill -> starting mastery in [0, 1]
    seeded_skills: tuple[str, ...]
    started_at: datetime
    completed_at: datetime
    event_published: bool


@dataclass(frozen=True, slots=True)
class PlacementView:
    """Where a placement stands: the next question, or the result."""

    placement_id: str
    answered: int
    max_items: int
    question: Question | None
    result: PlacementResult | None
    expires_at: datetime | None  # of the Redis session; None once finished


# --- I/O ----------------------------------------------------------------------------------


def session_key(settings: Settings, *, tenant_id: str, user_id: str) -> str:
    """Redis key of the account's placement session (contains ``<tenant>:<user>``)."""
    return redis_keys.redis_key(settings.redis_namespace, redis_keys.PLACEMENT, tenant_id, user_id)


_BANK = """
    SELECT p.item_id, p.skill_ids[1] AS skill_id, ip.a, ip.b, ip.c
    FROM published_content p
    JOIN irt_item_parameters ip ON ip.tenant_id = p.tenant_id AND ip.item_id = p.item_id
    WHERE p.tenant_id = $1 AND p.kind = 'question' AND cardinality(p.skill_ids) > 0
    ORDER BY p.item_id
"""


async def load_bank(db: Any, *, tenant_id: str) -> list[BankItem]:
    """The tenant's calibrated, published, skill-tagged questions, by item_id."""
    return [
        BankItem(r["item_id"], r["skill_id"], r["a"], r["b"], r["c"])
        for r in await db.fetch(_BANK, tenant_id)
    ]


async def _question(db: Any, *, tenant_id: str, item_id: str) -> tuple[Question, dict[str, Any]]:
    """The live published version of ``item_id`` and its payload (answer key included)."""
    row = await db.fetchrow(
        "SELECT item_id, version, title, skill_ids, payload FROM published_content "
        "WHERE tenant_id = $1 AND item_id = $2",
        tenant_id,
        item_id,
    )
    if row is None:
        # Archived while the session ran: the learner cannot answer it any more.
        raise ConflictError(
            f"question {item_id} was withdrawn during the test; start a new placement",
            field="body.item_id",
            reason="withdrawn",
        )
    payload: dict[str, Any] = json.loads(row["payload"])
    choices = payload.get("choices")
    question = Question(
        item_id=row["item_id"],
        version=row["version"],
        title=row["title"],
        prompt=str(payload.get("prompt", "")),
        choices=tuple(choices) if choices else None,
        skill_ids=tuple(row["skill_ids"]),
    )
    return question, payload


async def _view(
    db: Any, session: PlacementSession, settings: Settings, now: datetime
) -> PlacementView:
    question = None
    if session.current is not None:
        question, _ = await _question(
            db, tenant_id=session.tenant_id, item_id=session.bank[session.current].item_id
        )
    return PlacementView(
        placement_id=session.placement_id,
        answered=len(session.state.items),
        max_items=session.state.config.max_items,
        question=question,
        result=None,
        expires_at=now + timedelta(seconds=settings.placement_session_ttl_s),
    )


async def _stored_session(redis: Redis, key: str) -> tuple[bytes, PlacementSession] | None:
    raw = await redis.get(key)
    if raw is None:
        return None
    stored = raw.encode() if isinstance(raw, str) else raw  # the app's client returns bytes
    return stored, PlacementSession.from_json(stored)


async def _swap(redis: Redis, key: str, old: bytes, new: str, ttl_s: int) -> bool:
    done = await redis.eval(_COMPARE_AND_SET, 1, key, old, new, str(ttl_s))
    return bool(done)


async def start(
    db: Any,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    now: datetime,
) -> tuple[PlacementView, bool]:
    """Start a placement for account ``user_id``, or resume the one in progress.

    Returns the view and True when a new session was started. ConflictError when the
    tenant has no calibrated published questions.
    """
    key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
    existing = await _stored_session(redis, key)
    if existing is not None:
        await redis.expire(key, settings.placement_session_ttl_s)  # resuming is activity
        return await _view(db, existing[1], settings, now), False
    learner_id = await learner_ids.require_learner_id(db, tenant_id=tenant_id, user_id=user_id)
    bank = await load_bank(db, tenant_id=tenant_id)
    if not bank:
        raise ConflictError(
            "this tenant has no published questions with calibrated IRT parameters yet",
            reason="empty item bank",
        )
    state = cat.start(placement_config(bank, settings))
    seed = secrets.randbits(63)
    first = cat.next_item(state, cat_bank(bank), step_rng(seed, 0))
    session = PlacementSession(
        placement_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        user_id=user_id,
        learner_id=learner_id,
        started_at=now,
        bank=tuple(bank),
        state=state,
        current=first,
        seed=seed,
    )
    created = await redis.set(key, session.to_json(), ex=settings.placement_session_ttl_s, nx=True)
    if not created:  # a concurrent start won: resume that one
        existing = await _stored_session(redis, key)
        if existing is None:
            raise ConflictError("placement session changed meanwhile; try again")
        return await _view(db, existing[1], settings, now), False
    return await _view(db, session, settings, now), True


async def _require_session(
    redis: Redis, settings: Settings, *, tenant_id: str, user_id: str, placement_id: str
) -> tuple[bytes, PlacementSession] | None:
    stored = await _stored_session(
        redis, session_key(settings, tenant_id=tenant_id, user_id=user_id)
    )
    if stored is None or stored[1].placement_id != placement_id:
        return None
    return stored


async def get(
    db: Any,
    redis: Redis,
    settings: Settings,
    publisher: EventPublisher,
    *,
    tenant_id: str,
    user_id: str,
    placement_id: str,
    now: datetime,
) -> PlacementView:
    """The session in progress, or the finished result (retrying an unpublished event)."""
    stored = await _require_session(
        redis, settings, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if stored is not None:
        key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
        await redis.expire(key, settings.placement_session_ttl_s)  # reading is activity
        return await _view(db, stored[1], settings, now)
    result = await _stored_result(
        db, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if result is None:
        raise NotFoundError(
            "no placement with this id for you (sessions expire after inactivity)",
            field="path.placement_id",
            reason="not found",
        )
    if not result.event_published:
        result = await _publish(db, publisher, result, tenant_id=tenant_id)
    return _finished_view(result)


def _finished_view(result: PlacementResult) -> PlacementView:
    return PlacementView(
        placement_id=result.placement_id,
        answered=result.items_administered,
        max_items=result.items_administered,
        question=None,
        result=result,
        expires_at=None,
    )


async def answer(
    db: Any,
    redis: Redis,
    settings: Settings,
    publisher: EventPublisher,
    *,
    tenant_id: str,
    user_id: str,
    placement_id: str,
    item_id: str,
    response: str,
    now: datetime,
) -> PlacementView:
    """Grade the answer to the current question; the next question, or the result.

    NotFoundError for an unknown or expired session, ConflictError for an answer to a
    question other than the current one (a stale or repeated submit).
    """
    stored = await _require_session(
        redis, settings, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if stored is None:
        if await _stored_result(
            db, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
        ):
            raise ConflictError(
                "this placement is finished", field="path.placement_id", reason="finished"
            )
        raise NotFoundError(
            "no placement with this id for you (sessions expire after inactivity)",
            field="path.placement_id",
            reason="not found",
        )
    raw, session = stored
    if session.current is None or session.bank[session.current].item_id != item_id:
        expected = None if session.current is None else session.bank[session.current].item_id
        raise ConflictError(
            f"the current question is {expected}, not {item_id}",
            field="body.item_id",
            reason="not the current question",
        )
    _, payload = await _question(db, tenant_id=tenant_id, item_id=item_id)
    correct = grade(payload, response)
    state = cat.record_answer(session.state, session.current, correct)
    bank = session.cat_bank()
    following = cat.next_item(state, bank, step_rng(session.seed, len(state.items)))
    advanced = PlacementSession(
        placement_id=session.placement_id,
        tenant_id=session.tenant_id,
        user_id=session.user_id,
        learner_id=session.learner_id,
        started_at=session.started_at,
        bank=session.bank,
        state=state,
        current=following,
        seed=session.seed,
    )
    key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
    if following is not None:
        if not await _swap(redis, key, raw, advanced.to_json(), settings.placement_session_ttl_s):
            raise ConflictError(
                "this answer was already submitted", field="body.item_id", reason="answered"
            )
        return await _view(db, advanced, settings, now)
    # The last answer: store the result first (idempotent per placement_id), then end
    # the Redis session; a crash in between leaves a session whose finish repeats harmlessly.
    result = await finish(db, redis, settings, advanced, bank=bank, now=now)
    await _swap(redis, key, raw, "", settings.placement_session_ttl_s)
    if not result.event_published:
        result = await _publish(db, publisher, result, tenant_id=tenant_id)
    return _finished_view(result)


_INSERT_RESULT = """
    INSERT INTO placement_results (tenant_id, placement_id, user_id, learner_id, ability,
        ability_se, items_administered, correct, stop_reason, skill_estimates, answers,
        seeded_skills, started_at, completed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, '{}', $12, $13)
    ON CONFLICT (tenant_id, placement_id) DO NOTHING
    RETURNING placement_id
"""
_LOCK_ABILITY = """
    SELECT ability, ability_se, n_responses, prior_mean, prior_sd, log_density, version
    FROM learner_ability WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE
"""
_UPDATE_ABILITY = """
    UPDATE learner_ability SET ability = $3, ability_se = $4, n_responses = $5,
        log_density = $6::float8[], last_event_id = $7, last_attempt_at = $8,
        updated_at = now(), version = version + 1
    WHERE tenant_id = $1 AND user_id = $2 AND version = $9
"""
_INSERT_ABILITY = """
    INSERT INTO learner_ability (tenant_id, user_id, ability, ability_se, n_responses,
        prior_mean, prior_sd, log_density, last_event_id, last_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8[], $9, $10)
    ON CONFLICT (tenant_id, user_id) DO NOTHING
"""
_SEED_MASTERY = """
    INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                               last_event_id, last_attempt_at)
    SELECT $1, $2, s.skill_id, s.p_mastery, s.attempts, s.correct, $3, $4
    FROM unnest($5::text[], $6::float8[], $7::int[], $8::int[])
      AS s(skill_id, p_mastery, attempts, correct)
    ON CONFLICT (tenant_id, user_id, skill_id) DO NOTHING
    RETURNING skill_id
"""


class _RacedWriter(Exception):
    """A processor created the learner's ability row between our read and insert."""


async def finish(
    db: Any,
    redis: Redis,
    settings: Settings,
    session: PlacementSession,
    *,
    bank: cat.CatBank,
    now: datetime,
) -> PlacementResult:
    """Write the result, the ability and mastery seeds and the onboarding step at once.

    Idempotent per placement_id: a second call seeds nothing and returns the stored result.
    """
    outcome = cat.result(session.state, bank)
    answers = answers_of(session)
    per_skill = Counter(item.skill_id for item, _ in answers)
    correct_per_skill = Counter(item.skill_id for item, correct in answers if correct)
    skills = sorted(outcome.skill_mastery)
    seeded: list[str] | None = None
    for _ in range(3):  # a processor inserting the ability row first is rare; retry then
        try:
            seeded = await _write_result(
                db, session, outcome, answers, skills, per_skill, correct_per_skill, now
            )
            break
        except _RacedWriter:
            continue
    if seeded is None:
        raise ConflictError("learner state kept changing meanwhile; answer again")
    found = await _stored_result(
        db, tenant_id=session.tenant_id, user_id=session.user_id, placement_id=session.placement_id
    )
    assert found is not None
    if seeded:
        await _drop_hot_cache(redis, settings, session, seeded)
    return found


async def _write_result(
    db: Any,
    session: PlacementSession,
    outcome: cat.CatResult,
    answers: Sequence[tuple[BankItem, bool]],
    skills: Sequence[str],
    per_skill: Mapping[str, int],
    correct_per_skill: Mapping[str, int],
    now: datetime,
) -> list[str]:
    """One transaction; returns the skills seeded ([] if the placement was stored before)."""
    tenant_id, learner_id = session.tenant_id, session.learner_id
    event_id = uuid.UUID(session.placement_id)
    async with transaction(db) as conn:
        inserted = await conn.fetchval(
            _INSERT_RESULT,
            tenant_id,
            event_id,
            session.user_id,
            learner_id,
            outcome.ability,
            outcome.ability_se,
            outcome.n_items,
            sum(outcome.responses),
            outcome.stop_reason.value if outcome.stop_reason else "stopped",
            json.dumps(dict(outcome.skill_mastery)),
            json.dumps(
                [
                    {"item_id": item.item_id, "skill_id": item.skill_id, "correct": correct}
                    for item, correct in answers
                ]
            ),
            session.started_at,
            now,
        )
        if inserted is None:
            return []
        row = await conn.fetchrow(_LOCK_ABILITY, tenant_id, learner_id)
        if row is None:
            posterior = ability_after(None, answers)
            estimate = irt.summarize(posterior)
            status = await conn.execute(
                _INSERT_ABILITY,
                tenant_id,
                learner_id,
                estimate.ability,
                estimate.ability_se,
                posterior.n_responses,
                DEFAULT_PRIOR.mean,
                DEFAULT_PRIOR.sd,
                posterior.log_density.tolist(),
                event_id,
                now,
            )
            if status != "INSERT 0 1":
                raise _RacedWriter()
        else:
            density = np.asarray(row["log_density"], dtype=np.float64)
            prior = irt.NormalPrior(row["prior_mean"], row["prior_sd"], n_points=density.size)
            points, _ = irt.quadrature(prior)
            stored = irt.AbilityPosterior(points, density, row["n_responses"])
            posterior = ability_after(stored, answers)
            estimate = irt.summarize(posterior)
            # The row is locked FOR UPDATE, so its version cannot have moved.
            await conn.execute(
                _UPDATE_ABILITY,
                tenant_id,
                learner_id,
                estimate.ability,
                estimate.ability_se,
                posterior.n_responses,
                posterior.log_density.tolist(),
                event_id,
                now,
                row["version"],
            )
        seeded = [
            r["skill_id"]
            for r in await conn.fetch(
                _SEED_MASTERY,
                tenant_id,
                learner_id,
                event_id,
                now,
                list(skills),
                [outcome.skill_mastery[s] for s in skills],
                [per_skill.get(s, 0) for s in skills],
                [correct_per_skill.get(s, 0) for s in skills],
            )
        ]
        await conn.execute(
            "UPDATE placement_results SET seeded_skills = $3 "
            "WHERE tenant_id = $1 AND placement_id = $2",
            tenant_id,
            event_id,
            sorted(seeded),
        )
        await conn.execute(
            """
            INSERT INTO onboarding_progress (tenant_id, user_id, step, completed_at, skipped)
            VALUES ($1, $2, 'placement', $3, false) ON CONFLICT DO NOTHING
            """,
            tenant_id,
            session.user_id,
            now,
        )
        return seeded


async def _drop_hot_cache(
    redis: Redis, settings: Settings, session: PlacementSession, seeded: Sequence[str]
) -> None:
    """Drop the cached fields of the rows the seeds changed; readers fall back to PostgreSQL.

    The key and fields are those of :mod:`processors.learner_cache`.
    """
    key = redis_keys.redis_key(
        settings.redis_namespace, redis_keys.LEARNER_CACHE, session.tenant_id, session.learner_id
    )
    await redis.hdel(key, "ability", *(f"mastery:{skill}" for skill in seeded))


async def _stored_result(
    db: Any, *, tenant_id: str, user_id: str, placement_id: str
) -> PlacementResult | None:
    if not is_uuid(placement_id):
        return None
    row = await db.fetchrow(
        "SELECT * FROM placement_results WHERE tenant_id = $1 AND placement_id = $2 "
        "AND user_id::text = $3",
        tenant_id,
        placement_id,
        user_id,
    )
    return _result_from_row(row) if row is not None else None


async def latest_result(db: Any, *, tenant_id: str, user_id: str) -> PlacementResult | None:
    """The account's most recent finished placement, or None."""
    row = await db.fetchrow(
        "SELECT * FROM placement_results WHERE tenant_id = $1 AND user_id::text = $2 "
        "ORDER BY completed_at DESC LIMIT 1",
        tenant_id,
        user_id,
    )
    return _result_from_row(row) if row is not None else None


def _result_from_row(row: Any) -> PlacementResult:
    return PlacementResult(
        placement_id=str(row["placement_id"]),
        user_id=str(row["user_id"]),
        learner_id=row["learner_id"],
        ability=row["ability"],
        ability_se=row["ability_se"],
        items_administered=row["items_administered"],
        correct=row["correct"],
        stop_reason=row["stop_reason"],
        skill_estimates=json.loads(row["skill_estimates"]),
        seeded_skills=tuple(row["seeded_skills"]),
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        event_published=row["event_published_at"] is not None,
    )


def placement_event(result: PlacementResult, *, tenant_id: str) -> placement_pb2.PlacementEvent:
    """The PlacementEvent of ``result``; its event_id is the placement_id (stable on retry)."""
    event = placement_pb2.PlacementEvent()
    envelope = event.envelope
    envelope.event_id = result.placement_id
    envelope.tenant_id = tenant_id
    envelope.user_id = result.learner_id
    envelope.occurred_at.FromDatetime(result.completed_at)
    envelope.source.app = SOURCE_APP
    envelope.source.platform = "api"
    event.placement_id = result.placement_id
    event.ability = result.ability
    event.ability_se = result.ability_se
    event.items_administered = result.items_administered
    for skill_id in sorted(result.skill_estimates):
        estimate = event.skill_estimates.add()
        estimate.skill_id = skill_id
        estimate.p_mastery = result.skill_estimates[skill_id]
    return event


async def _publish(
    db: Any, publisher: EventPublisher, result: PlacementResult, *, tenant_id: str
) -> PlacementResult:
    if not await publisher.publish(Stream.PLACEMENTS, placement_event(result, tenant_id=tenant_id)):
        return result
    await db.execute(
        "UPDATE placement_results SET event_published_at = now() "
        "WHERE tenant_id = $1 AND placement_id = $2 AND event_published_at IS NULL",
        tenant_id,
        result.placement_id,
    )
    return replace(result, event_published=True)

"""The pure half of the learner-state processor: one attempt's effect on every view.

Each view is checked against the scheduler/ function it must agree with, computed
here independently: BKT with per-skill parameters, EAP ability from all answers at
once (scheduler.irt.estimate_eap) against the incremental posterior, FSRS or SM-2
per tenant, and the reasons an ability update is skipped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import numpy as np
import pytest

from learnstream.db import Connection
from learnstream.views.ability import AbilityState
from learnstream.views.calibration import ItemParams
from learnstream.views.mastery import MasteryKey
from learnstream.views.reviews import ReviewKey
from processors.bkt_chain import clamp_probability
from processors.events import Attempt, LearnerKey
from processors.learner_state import (
    LearnerParameters,
    LearnerStates,
    TenantCache,
    learner_changes,
    month_of,
    review_step,
)
from scheduler import irt, srs
from scheduler.bkt import DEFAULT_PARAMS, BKTParams, update

T0 = datetime(2024, 3, 31, 23, 59, tzinfo=UTC)
EMPTY = LearnerStates({}, {}, {}, {}, {}, {})
FITTED = BKTParams(prior=0.35, learn=0.22, guess=0.18, slip=0.07, forget=0.01)


def attempt(
    user: str,
    item: str,
    skills: tuple[str, ...],
    correct: bool,
    n: int,
    *,
    tenant: str = "t",
    score: float | None = None,
    response_time_ms: int | None = None,
) -> Attempt:
    return Attempt(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant,
        user_id=user,
        session_id="",
        skill_ids=skills,
        correct=correct,
        score=score if score is not None else float(correct),
        occurred_at=T0 + timedelta(hours=n),
        item_id=item,
        response_time_ms=response_time_ms,
    )


def parameters(
    bkt: dict[tuple[str, str], BKTParams] | None = None,
    items: dict[tuple[str, str], ItemParams] | None = None,
    scheduler: dict[str, str] | None = None,
) -> LearnerParameters:
    return LearnerParameters(bkt or {}, items or {}, scheduler or {})


def test_fitted_skill_parameters_are_used_and_others_default() -> None:
    answers = [True, False, True, True]
    attempts = [attempt("u", f"i{n}", ("fit", "plain"), c, n) for n, c in enumerate(answers)]
    changes = learner_changes(
        attempts, EMPTY, parameters(bkt={("t", "fit"): FITTED}), mastery_topic="m"
    )
    p_fit, p_plain = FITTED.prior, DEFAULT_PARAMS.prior
    for correct in answers:
        p_fit = clamp_probability(update(p_fit, float(correct), FITTED))
        p_plain = clamp_probability(update(p_plain, float(correct), DEFAULT_PARAMS))
    assert changes.mastery[MasteryKey("t", "u", "fit")].p_mastery == p_fit
    assert changes.mastery[MasteryKey("t", "u", "plain")].p_mastery == p_plain
    assert p_fit != p_plain
    assert len(changes.mastery_records) == len(answers)


def test_incremental_ability_matches_eap_from_all_answers() -> None:
    bank = irt.ItemBank(
        a=np.array([0.7, 1.3, 2.0, 1.0]),
        b=np.array([-1.0, 0.0, 0.8, 1.5]),
        c=np.array([0.0, 0.1, 0.2, 0.0]),
    )
    items = {("t", f"i{n}"): ItemParams(bank.a[n], bank.b[n], bank.c[n]) for n in range(4)}
    order = [0, 1, 2, 3, 2, 1, 0, 3]
    scores = [1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 1.0]
    attempts = [
        attempt("u", f"i{i}", ("s",), s >= 1.0, n, score=s)
        for n, (i, s) in enumerate(zip(order, scores, strict=True))
    ]
    # Chained over batches of 3 through stored states, as the processor does.
    states = EMPTY
    for start in range(0, len(attempts), 3):
        changes = learner_changes(
            attempts[start : start + 3], states, parameters(items=items), mastery_topic="m"
        )
        states = LearnerStates({}, {}, {**states.ability, **changes.ability}, {}, {}, {})
    stored = states.ability[LearnerKey("t", "u")]
    expected = irt.estimate_eap(bank, order, scores)
    assert stored.estimate.ability == pytest.approx(expected.ability, abs=1e-12)
    assert stored.estimate.ability_se == pytest.approx(expected.ability_se, abs=1e-12)
    assert stored.posterior.n_responses == len(order)
    assert stored.posterior.log_density.max() == 0.0


def _one_answer_at_a_time(
    posterior: irt.AbilityPosterior, answers: list[tuple[ItemParams, float]]
) -> irt.AbilityPosterior:
    # The processor's step before answers were batched: update_posterior, then the
    # shift to a maximum of 0, answer by answer.
    for item, score in answers:
        after = irt.update_posterior(posterior, item.a, item.b, item.c, score)
        posterior = irt.AbilityPosterior(
            after.points, after.log_density - after.log_density.max(), after.n_responses
        )
    return posterior


@pytest.mark.parametrize("seed", range(20))
def test_batched_ability_is_bit_identical_to_one_answer_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # 3PL and 2PL items mixed (the c > 0 branch of log_p_q), partial scores, extreme b.
    items = {
        ("t", f"i{k}"): ItemParams(
            float(rng.uniform(0.2, 3.0)),
            float(rng.normal(0.0, 2.0) if k % 7 else rng.choice([-60.0, 60.0])),
            float(rng.choice([0.0, rng.uniform(0.0, 0.35)])),
        )
        for k in range(n)
    }
    scores = [float(rng.choice([0.0, 1.0, rng.uniform()])) for _ in range(n)]
    attempts = [
        attempt("u", f"i{k}", ("s",), score >= 1.0, k, score=score)
        for k, score in enumerate(scores)
    ]
    prior = irt.NormalPrior(mean=float(rng.normal()), sd=float(rng.uniform(0.5, 2.0)))
    start = irt.initial_posterior(prior)
    start = irt.AbilityPosterior(start.points, start.log_density + rng.normal(size=81), 3)
    before = AbilityState(start, prior, irt.summarize(start), "e", T0)
    states = LearnerStates({}, {}, {LearnerKey("t", "u"): before}, {}, {}, {})
    split = int(rng.integers(0, n + 1))
    expected = _one_answer_at_a_time(start, [(items[("t", f"i{k}")], scores[k]) for k in range(n)])
    for batches in ([attempts], [attempts[:split], attempts[split:]]):
        current = states
        for batch in batches:
            changes = learner_changes(batch, current, parameters(items=items), mastery_topic="m")
            current = LearnerStates({}, {}, {**current.ability, **changes.ability}, {}, {}, {})
        stored = current.ability[LearnerKey("t", "u")]
        assert stored.posterior.log_density.tobytes() == expected.log_density.tobytes()
        assert stored.posterior.n_responses == expected.n_responses == 3 + n
        assert stored.estimate == irt.summarize(expected)
        assert stored.last_event_id == attempts[-1].event_id


@pytest.mark.parametrize("seed", range(10))
def test_learners_sharing_a_batch_each_get_their_one_at_a_time_posterior(seed: int) -> None:
    # One log_p_q call serves every learner on a grid; learners on other grids (a stored
    # posterior built on another prior) get their own. Answers interleave across learners.
    rng = np.random.default_rng(seed)
    items = {
        ("t", f"i{k}"): ItemParams(
            float(rng.uniform(0.2, 3.0)),
            float(rng.normal(0.0, 2.0)),
            float(rng.choice([0.0, rng.uniform(0.0, 0.35)])),
        )
        for k in range(30)
    }
    default = irt.NormalPrior()
    other = irt.NormalPrior(mean=0.5, sd=1.5)
    stored: dict[LearnerKey, AbilityState] = {}
    for user, prior in (("stored-default", default), ("stored-other", other)):
        start = irt.initial_posterior(prior)
        start = irt.AbilityPosterior(start.points, start.log_density + rng.normal(size=81), 2)
        stored[LearnerKey("t", user)] = AbilityState(start, prior, irt.summarize(start), "e", T0)
    users = ["new-a", "new-b", "stored-default", "stored-other"]
    answers: dict[str, list[tuple[ItemParams, float]]] = {user: [] for user in users}
    attempts = []
    for n in range(int(rng.integers(4, 60))):
        user = users[int(rng.integers(len(users)))]
        item = f"i{int(rng.integers(30))}"
        score = float(rng.choice([0.0, 1.0, rng.uniform()]))
        answers[user].append((items[("t", item)], score))
        attempts.append(attempt(user, item, ("s",), score >= 1.0, n, score=score))
    states = LearnerStates({}, {}, stored, {}, {}, {})
    changes = learner_changes(attempts, states, parameters(items=items), mastery_topic="m")
    for user in users:
        key = LearnerKey("t", user)
        if not answers[user]:
            assert key not in changes.ability
            continue
        before = stored[key].posterior if key in stored else irt.initial_posterior(default)
        expected = _one_answer_at_a_time(before, answers[user])
        after = changes.ability[key]
        assert after.posterior.log_density.tobytes() == expected.log_density.tobytes()
        assert after.posterior.points.tobytes() == before.points.tobytes()
        assert after.estimate == irt.summarize(expected)
        assert after.prior == (stored[key].prior if key in stored else default)


def test_uncalibrated_items_and_missing_items_skip_ability_with_a_reason() -> None:
    items = {("t", "known"): ItemParams(1.0, 0.0, 0.0)}
    attempts = [
        attempt("u", "known", ("s",), True, 0),
        attempt("u", "unknown", ("s",), True, 1),
        attempt("u", "", ("s",), False, 2),
    ]
    changes = learner_changes(attempts, EMPTY, parameters(items=items), mastery_topic="m")
    assert changes.ability[LearnerKey("t", "u")].posterior.n_responses == 1
    assert changes.ability_skipped == {"no_item_parameters": 1, "no_item": 1}
    # An attempt without an item still moves mastery but schedules nothing.
    assert set(changes.reviews) == {ReviewKey("t", "u", "known"), ReviewKey("t", "u", "unknown")}
    assert changes.mastery[MasteryKey("t", "u", "s")].attempts == 3


@pytest.mark.parametrize("algorithm", ["fsrs", "sm2"])
def test_review_schedule_follows_the_tenant_algorithm(algorithm: str) -> None:
    answers = [(True, 2500), (True, 9000), (False, None), (True, 30000)]
    attempts = [
        attempt("u", "i", ("s",), c, 24 * n, tenant="x", response_time_ms=ms)
        for n, (c, ms) in enumerate(answers)
    ]
    changes = learner_changes(
        attempts, EMPTY, parameters(scheduler={"x": algorithm}), mastery_topic="m"
    )
    scheduler = srs.make_scheduler(algorithm)
    state = scheduler.new_state()
    for a in attempts:
        scheduled = scheduler.review(
            state, srs.Attempt(a.correct, a.response_time_ms, 0, a.score), a.occurred_at
        )
        state = scheduled.state
    review = changes.reviews[ReviewKey("x", "u", "i")]
    assert review.algorithm == algorithm
    assert review.state == scheduler.state_to_dict(state)
    assert review.due_at == scheduled.due_at
    assert review.reviews == len(attempts)


def test_switching_algorithm_restarts_the_schedule() -> None:
    first = attempt("u", "i", ("s",), True, 0)
    fsrs_state, reset = review_step(None, first, "fsrs")
    assert not reset
    second = attempt("u", "i", ("s",), True, 24)
    sm2_state, reset = review_step(fsrs_state, second, "sm2")
    assert reset
    assert (sm2_state.algorithm, sm2_state.reviews) == ("sm2", 1)
    fresh, _ = review_step(None, second, "sm2")
    assert sm2_state.state == fresh.state


def test_month_of_is_the_partition_lower_bound_in_utc() -> None:
    # 20:30 on 31 March in New York is already April in UTC.
    new_york = datetime(2024, 3, 31, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert month_of(new_york) == datetime(2024, 4, 1, tzinfo=UTC)
    assert month_of(T0) == datetime(2024, 3, 1, tzinfo=UTC)


async def test_tenant_cache_reloads_only_expired_tenants() -> None:
    now = [0.0]
    loads: list[list[str]] = []

    async def load(conn: object, tenants: list[str]) -> dict[str, int]:
        loads.append(tenants)
        return {t: len(loads) for t in tenants if t != "absent"}

    cache = TenantCache(load, lambda: -1, ttl_s=10.0, clock=lambda: now[0])
    no_connection = cast(Connection, None)  # the fake load never uses it
    assert await cache.get(no_connection, ["a", "absent"]) == {"a": 1, "absent": -1}
    now[0] = 5.0
    assert await cache.get(no_connection, ["a", "b"]) == {"a": 1, "b": 2}
    now[0] = 12.0
    assert await cache.get(no_connection, ["a", "b"]) == {"a": 3, "b": 2}
    assert loads == [["a", "absent"], ["b"], ["a"]]

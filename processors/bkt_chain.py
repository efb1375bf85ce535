"""learner_state's BKT step over a batch: attempts in order, skill_mastery rows out; pure.

For every attempt and every skill it exercises, the learner's P(mastered) moves by one
Bayesian Knowledge Tracing step (:func:`scheduler.bkt.update`), starting from the prior
for a skill never seen. The batch is replayed in memory in offset order, so a learner's
consecutive attempts chain exactly as if applied one by one; each attempt's steps
become its MasteryUpdated (:func:`processors.events.mastery_updated`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from learnstream.views.mastery import MasteryKey, MasteryState
from processors.events import Attempt, AttemptUpdate, SkillStep
from scheduler.bkt import DEFAULT_PARAMS, BKTParams, predict_correct, update


def clamp_probability(p: float) -> float:
    """``p`` limited to [0, 1].

    scheduler.bkt.update can land one rounding step outside [0, 1] (1.0000000000000002
    after a long run of correct answers), which skill_mastery's CHECK rejects.
    Clamping every step, not only the stored value, keeps the chain the same
    whichever batches the attempts fall into.
    """
    return min(max(p, 0.0), 1.0)


def chain_updates(
    attempts: Sequence[Attempt],
    states: Mapping[MasteryKey, MasteryState],
    params: BKTParams = DEFAULT_PARAMS,
    *,
    skill_params: Mapping[tuple[str, str], BKTParams] | None = None,
) -> tuple[dict[MasteryKey, MasteryState], list[AttemptUpdate]]:
    """Apply ``attempts`` in order to ``states``; pure.

    A skill without a state starts from ``params.prior``; every step is
    :func:`scheduler.bkt.update` clamped to [0, 1]. Each attempt sees the
    state left by the previous ones, so a learner's consecutive attempts in one
    batch chain exactly as if applied one by one. An attempt whose event_id is the
    skill's ``last_event_id`` (a duplicate delivered right after itself) changes
    nothing. ``skill_params`` maps ``(tenant_id, skill_id)`` to fitted parameters;
    skills not in it use ``params``. Returns the new state of every key touched, and
    per attempt its steps.
    """
    fitted = skill_params or {}
    touched: dict[MasteryKey, MasteryState] = {}
    updates: list[AttemptUpdate] = []
    for attempt in attempts:
        steps: list[SkillStep] = []
        for skill_id in attempt.skill_ids:
            key = MasteryKey(attempt.tenant_id, attempt.user_id, skill_id)
            state = touched.get(key) or states.get(key)
            if state is not None and state.last_event_id == attempt.event_id:
                continue
            skill = fitted.get((attempt.tenant_id, skill_id), params)
            p_before = skill.prior if state is None else state.p_mastery
            p_after = clamp_probability(update(p_before, attempt.score, skill))
            new_state = MasteryState(
                p_mastery=p_after,
                attempts=(0 if state is None else state.attempts) + 1,
                correct=(0 if state is None else state.correct) + int(attempt.correct),
                last_event_id=attempt.event_id,
                last_attempt_at=attempt.occurred_at,
            )
            touched[key] = new_state
            steps.append(
                SkillStep(
                    skill_id=skill_id,
                    p_mastery_before=p_before,
                    p_mastery=p_after,
                    p_correct_predicted=predict_correct(p_before, skill),
                    attempts=new_state.attempts,
                )
            )
        updates.append(AttemptUpdate(attempt, tuple(steps)))
    return touched, updates

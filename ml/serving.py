"""Online knowledge tracing for the stream processors: batched, per-learner state, no Kafka.

:func:`load_tracer` returns the registry's champion wrapped in :class:`ModelTracer`, or
:class:`BKTTracer` when no model is registered. Both take a list of attempts (several
learners, several attempts each, in arrival order) and return, after every attempt,
P(correct) for every skill; with ``explain_top_k`` each learner's last attempt of a
call also says which past answers mattered most for the attempt's (first) skill.

Per learner the model tracer keeps the last ``window_length`` answers and, for
recurrent models (DKT-LSTM), the hidden state (h, c); window models (SAKT) re-read
the window. One call runs in rounds: round r feeds every learner's r-th answer of the
call as one batch, so N learners with one attempt each cost one model step.
A multi-skill attempt is fed as one answer per skill (as in training). Skills the model
was not trained on are skipped (they keep no prediction from the model).
State lives in memory; a processor that restarts starts learners afresh unless it
restores them (:meth:`ModelTracer.restore`: a saved recurrent state, or a replay of
their recent attempts), as processors/predictions.py does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from learnstream.settings import Settings
from ml.registry import LoadedModel, ModelRegistry
from scheduler import bkt


@dataclass(frozen=True, slots=True)
class AttemptInput:
    """One answer event as the tracer needs it."""

    learner_id: str  # "tenant:user"
    skill_ids: tuple[str, ...]
    correct: bool


@dataclass(frozen=True, slots=True)
class Evidence:
    """One past answer and how much it mattered for a prediction."""

    answers_ago: int  # 0 = the newest answer
    skill_id: str
    correct: bool
    weight: float  # model-specific scale; larger magnitude = mattered more


@dataclass(frozen=True, slots=True)
class TracingResult:
    """P(correct) in [0, 1] per skill id after one attempt, and who computed it."""

    learner_id: str
    p_correct: Mapping[str, float]
    source: str  # "dkt@3", "bkt"
    explanation: tuple[Evidence, ...] = ()


class Tracer(Protocol):
    """What processors call; :class:`ModelTracer` and :class:`BKTTracer` implement it."""

    def observe(self, attempts: Sequence[AttemptInput]) -> list[TracingResult]: ...

    def explain(self, learner_id: str, skill_id: str, top_k: int = 5) -> tuple[Evidence, ...]: ...


@dataclass(slots=True)
class _LearnerState:
    window: deque[tuple[int, int]]  # (skill index, correct) of recent answers
    recurrent: torch.Tensor | None = None


class ModelTracer:
    """A trained model serving many learners; ``explain_top_k`` > 0 adds explanations."""

    def __init__(
        self, loaded: LoadedModel, device: torch.device, *, explain_top_k: int = 0
    ) -> None:
        self.loaded = loaded
        self.device = device
        self.explain_top_k = explain_top_k
        self.window_length = min(loaded.window_length, loaded.model.config.max_length)
        self._skill_index = {skill: i for i, skill in enumerate(loaded.skill_vocabulary)}
        self._learners: dict[str, _LearnerState] = {}

    def _state(self, learner_id: str) -> _LearnerState:
        state = self._learners.get(learner_id)
        if state is None:
            state = _LearnerState(deque(maxlen=self.window_length))
            self._learners[learner_id] = state
        return state

    def _step(self, answers: Sequence[tuple[str, int, int]]) -> torch.Tensor:
        """Feed one answer per distinct learner as one batch; returns P(correct) [N, K]."""
        states = [self._state(learner) for learner, _, _ in answers]
        for state, (_, skill_index, answer) in zip(states, answers, strict=True):
            state.window.append((skill_index, answer))
        width = max(len(s.window) for s in states)
        padded = [list(s.window) + [(0, 0)] * (width - len(s.window)) for s in states]
        pairs = torch.tensor(padded, dtype=torch.int64)  # [N, W, 2]
        skills, correct = pairs[..., 0], pairs[..., 1].float()
        lengths = torch.tensor([len(s.window) for s in states])
        recurrent: torch.Tensor | None = None
        known = [s.recurrent for s in states if s.recurrent is not None]
        if len(known) == len(states):
            recurrent = torch.stack(known)
        elif known:
            # New and known learners in one batch: new ones start from a zero state.
            recurrent = torch.stack(
                [
                    s.recurrent if s.recurrent is not None else torch.zeros_like(known[0])
                    for s in states
                ]
            )
        with torch.no_grad():
            logits, new_state = self.loaded.model.serve(
                skills.to(self.device),
                correct.to(self.device),
                lengths.to(self.device),
                recurrent.to(self.device) if recurrent is not None else None,
            )
        if new_state is not None:
            for row, state in enumerate(states):
                state.recurrent = new_state[row]
        return torch.sigmoid(logits).cpu()

    def observe(self, attempts: Sequence[AttemptInput]) -> list[TracingResult]:
        """Feed attempts in order; one result per attempt, after that attempt."""
        queues: dict[str, deque[tuple[int, int, int]]] = {}
        for position, attempt in enumerate(attempts):
            for skill in attempt.skill_ids:
                index = self._skill_index.get(skill)
                if index is not None:
                    queues.setdefault(attempt.learner_id, deque()).append(
                        (position, index, int(attempt.correct))
                    )
        after_attempt: dict[int, torch.Tensor] = {}
        while queues:
            batch = [(learner, queue.popleft()) for learner, queue in queues.items()]
            queues = {learner: queue for learner, queue in queues.items() if queue}
            probabilities = self._step([(learner, s, c) for learner, (_, s, c) in batch])
            for row, (_, (position, _, _)) in enumerate(batch):
                # The last answer of a multi-skill attempt gives the attempt's result.
                after_attempt[position] = probabilities[row]
        last_of_learner = {a.learner_id: position for position, a in enumerate(attempts)}
        results: list[TracingResult] = []
        vocabulary = self.loaded.skill_vocabulary
        for position, attempt in enumerate(attempts):
            probabilities_now = after_attempt.get(position)
            p_correct = (
                dict(zip(vocabulary, probabilities_now.tolist(), strict=True))
                if probabilities_now is not None
                else {}
            )
            explanation: tuple[Evidence, ...] = ()
            # Explanations read the window as it is now, so only a learner's last
            # attempt of the call gets one.
            if (
                self.explain_top_k
                and attempt.skill_ids
                and probabilities_now is not None
                and last_of_learner[attempt.learner_id] == position
            ):
                explanation = self.explain(
                    attempt.learner_id, attempt.skill_ids[0], self.explain_top_k
                )
            results.append(
                TracingResult(attempt.learner_id, p_correct, self.loaded.label, explanation)
            )
        return results

    def evict(self, learner_ids: Sequence[str]) -> None:
        """Drop learners' state (memory grows with active learners until evicted)."""
        for learner_id in learner_ids:
            self._learners.pop(learner_id, None)

    def recurrent_state(self, learner_id: str) -> torch.Tensor | None:
        """The learner's recurrent state (None for window models or an unknown learner)."""
        state = self._learners.get(learner_id)
        return None if state is None else state.recurrent

    def restore(
        self,
        learner_id: str,
        history: Sequence[AttemptInput],
        recurrent: torch.Tensor | None = None,
    ) -> None:
        """Set a learner's state from its recent attempts (oldest first), e.g. after a restart.

        With ``recurrent`` (saved by :meth:`recurrent_state` from this same model) the
        window is refilled from ``history`` and the state is taken as is; without it the
        history is replayed from a fresh state.
        """
        self.evict([learner_id])
        if recurrent is None:
            if history:
                self.observe(history)
            return
        state = self._state(learner_id)
        for attempt in history:
            for skill in attempt.skill_ids:
                index = self._skill_index.get(skill)
                if index is not None:
                    state.window.append((index, int(attempt.correct)))
        state.recurrent = recurrent.to(self.device)

    def explain(self, learner_id: str, skill_id: str, top_k: int = 5) -> tuple[Evidence, ...]:
        """The ``top_k`` answers in the learner's window that mattered most for ``skill_id``.

        Ordered by weight magnitude, largest first; empty for an unknown learner or skill.
        """
        state = self._learners.get(learner_id)
        index = self._skill_index.get(skill_id)
        if state is None or index is None or not state.window:
            return ()
        window = list(state.window)
        skills = torch.tensor([[s for s, _ in window]], device=self.device)
        correct = torch.tensor([[float(c) for _, c in window]], device=self.device)
        lengths = torch.tensor([len(window)], device=self.device)
        weights = self.loaded.model.explain(
            skills, correct, lengths, torch.tensor([index], device=self.device)
        )[0].cpu()
        order = torch.argsort(weights.abs(), descending=True)[:top_k].tolist()
        vocabulary = self.loaded.skill_vocabulary
        return tuple(
            Evidence(
                answers_ago=len(window) - 1 - t,
                skill_id=vocabulary[window[t][0]],
                correct=bool(window[t][1]),
                weight=float(weights[t]),
            )
            for t in order
        )


@dataclass(slots=True)
class BKTTracer:
    """Per-skill BKT with the shared update in ``scheduler.bkt``; the fallback tracer.

    ``params_by_skill`` holds fitted parameters; other skills use ``default``.
    ``p_correct`` covers the fitted skills and every skill the learner has answered.
    """

    params_by_skill: Mapping[str, bkt.BKTParams] = field(default_factory=dict)
    default: bkt.BKTParams = bkt.DEFAULT_PARAMS
    _mastery: dict[str, dict[str, float]] = field(default_factory=dict)

    def observe(self, attempts: Sequence[AttemptInput]) -> list[TracingResult]:
        results: list[TracingResult] = []
        for attempt in attempts:
            mastery = self._mastery.setdefault(attempt.learner_id, {})
            for skill in attempt.skill_ids:
                params = self.params_by_skill.get(skill, self.default)
                p = mastery.get(skill, params.prior)
                mastery[skill] = bkt.update(p, float(attempt.correct), params)
            skills = set(self.params_by_skill) | set(mastery)
            p_correct = {
                skill: bkt.predict_correct(
                    mastery.get(skill, self.params_by_skill.get(skill, self.default).prior),
                    self.params_by_skill.get(skill, self.default),
                )
                for skill in sorted(skills)
            }
            results.append(TracingResult(attempt.learner_id, p_correct, "bkt"))
        return results

    def explain(self, learner_id: str, skill_id: str, top_k: int = 5) -> tuple[Evidence, ...]:
        """BKT's state is one number per skill: there is no per-answer attribution."""
        return ()

    def restore(
        self,
        learner_id: str,
        history: Sequence[AttemptInput],
        recurrent: torch.Tensor | None = None,
    ) -> None:
        """Replay the learner's recent attempts (oldest first) from the priors."""
        self._mastery.pop(learner_id, None)
        self.observe(history)

    def recurrent_state(self, learner_id: str) -> torch.Tensor | None:
        """BKT keeps no recurrent state."""
        return None


def load_tracer(
    settings: Settings, device: torch.device, *, explain_top_k: int = 0
) -> ModelTracer | BKTTracer:
    """The champion of ``settings.ml_model_name`` as a tracer, else BKT with default parameters."""
    loaded = ModelRegistry(settings).load_champion(settings.ml_model_name, device)
    if loaded is None:
        return BKTTracer()
    return ModelTracer(loaded, device, explain_top_k=explain_top_k)

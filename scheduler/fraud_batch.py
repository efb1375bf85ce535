"""Fraud scoring of one batch of attempts or session sightings: pure, deterministic.

The signals themselves are :mod:`scheduler.fraud`; this module applies them to a batch
in order, given everything the batch reads (loaded up front by
:mod:`learnstream.views.fraud`), and returns everything it writes plus the scores to
announce (the stream adapter is :mod:`processors.fraud`). No I/O: the same inputs give
the same outputs, so a batch is tested without a database.

Attempts (:func:`score_attempts`): rapid response against the item's (or skill's)
response-time reference *before* the answer, person misfit over the learner's recent
answers with this one pushed, impossible velocity, and for an uncommon wrong answer
collusion with other learners of the same class or shared session, which re-scores
each partner's attempt too. Sightings (:func:`score_sightings`): every session within
the device window of a sighted session is re-scored for shared-device use.

Keys are plain tuples: a learner is ``(tenant_id, user_id)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from scheduler.fraud import (
    DEFAULT_FRAUD_CONFIG,
    EMPTY_REFERENCE,
    FraudConfig,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    collusion,
    combine,
    difficulty_proxy,
    is_uncommon,
    observe,
    person_misfit,
    rapid_response,
    shared_device,
    velocity,
)

ATTEMPT = "attempt"
SESSION = "session"

Learner = tuple[str, str]  # (tenant_id, user_id)
ItemKey = tuple[str, str]  # (tenant_id, item_id)


class ScoredAnswer(Protocol):
    """An attempt as fraud scoring sees it (an AttemptEvent, validated)."""

    @property
    def event_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def skill_ids(self) -> tuple[str, ...]: ...  # at least one
    @property
    def correct(self) -> bool: ...
    @property
    def score(self) -> float: ...  # in [0, 1]
    @property
    def occurred_at(self) -> datetime: ...  # UTC
    @property
    def item_id(self) -> str: ...
    @property
    def response(self) -> str | None: ...  # normalized; None when empty
    @property
    def response_time_ms(self) -> int: ...  # 0: not reported


class Sighting(Protocol):
    """A SessionEvent that names a device and a session."""

    @property
    def event_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...  # UTC


class ReferenceKey(NamedTuple):
    tenant_id: str
    scope: str  # "item" or "skill"
    scope_id: str


class AnswerKey(NamedTuple):
    tenant_id: str
    item_id: str
    response: str


class SubjectKey(NamedTuple):
    tenant_id: str
    kind: str  # ATTEMPT or SESSION
    subject_id: str


class DeviceSessionKey(NamedTuple):
    tenant_id: str
    device_id: str
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class LearnerHistory:
    """The learner's last answers, oldest first (parallel tuples)."""

    event_ids: tuple[str, ...] = ()
    occurred_at: tuple[datetime, ...] = ()
    scores: tuple[float, ...] = ()
    a: tuple[float, ...] = ()
    b: tuple[float, ...] = ()
    c: tuple[float, ...] = ()

    def push(
        self,
        event_id: str,
        at: datetime,
        score: float,
        params: tuple[float, float, float],
        keep: int,
    ) -> LearnerHistory:
        """This history with one more answer, keeping the last ``keep``."""
        cut = slice(-keep, None)
        return LearnerHistory(
            (*self.event_ids, event_id)[cut],
            (*self.occurred_at, at)[cut],
            (*self.scores, score)[cut],
            (*self.a, params[0])[cut],
            (*self.b, params[1])[cut],
            (*self.c, params[2])[cut],
        )


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One row of ``fraud_signals`` (the key aside)."""

    user_id: str
    session_id: str
    item_id: str
    device_id: str
    occurred_at: datetime
    evidence: tuple[FraudEvidence, ...]  # at most one per signal, sorted by signal
    last_cause_id: str

    @property
    def score(self) -> float:
        return combine(self.evidence)

    def with_evidence(self, new: FraudEvidence | None, signal: FraudSignalKind) -> SignalRow:
        """This row with ``signal``'s evidence replaced by ``new`` (removed when None)."""
        kept = [e for e in self.evidence if e.signal is not signal]
        if new is not None:
            kept.append(new)
        return replace(self, evidence=tuple(sorted(kept, key=lambda e: e.signal.value)))


@dataclass(frozen=True, slots=True)
class GroupAnswer:
    """A wrong answer as the collusion window stores it."""

    group_key: str
    user_id: str
    session_id: str
    event_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Rescore:
    """A subject whose score was (re)computed, and the event that caused it."""

    subject: SubjectKey
    row: SignalRow
    cause_event_id: str


@dataclass(frozen=True, slots=True)
class AttemptInputs:
    """What a batch of attempts reads, loaded before scoring.

    ``stored_answers`` may hold more than the batch can match (the scoring filters by
    group, window and learner); ``partners`` and ``signals`` must cover every attempt
    a wrong answer of the batch can match, stored or in the batch.
    """

    histories: Mapping[Learner, LearnerHistory]
    references: Mapping[ReferenceKey, ResponseReference]
    wrong_counts: Mapping[AnswerKey, int]
    groups: Mapping[Learner, tuple[str, ...]]  # class groups, ``class:<uuid>``
    item_params: Mapping[ItemKey, tuple[float, float, float]]  # calibrated (a, b, c)
    stored_answers: Sequence[tuple[AnswerKey, GroupAnswer]] = ()
    partners: Mapping[SubjectKey, frozenset[str]] = field(default_factory=dict)
    signals: Mapping[SubjectKey, SignalRow] = field(default_factory=dict)


@dataclass(slots=True)
class AttemptOutcome:
    """What a batch of attempts writes, and the scores to announce in order."""

    histories: dict[Learner, LearnerHistory]
    references: dict[ReferenceKey, ResponseReference]
    wrong_counts: dict[AnswerKey, int]
    signals: dict[SubjectKey, SignalRow] = field(default_factory=dict)  # changed rows
    new_answers: list[tuple[AnswerKey, GroupAnswer]] = field(default_factory=list)
    new_partners: set[tuple[SubjectKey, str]] = field(default_factory=set)
    scored: list[Rescore] = field(default_factory=list)


def individual_evidence(
    scored: ScoredAnswer,
    *,
    history: LearnerHistory,
    item: ResponseReference,
    skill: ResponseReference,
    calibrated: tuple[float, float, float] | None,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> tuple[list[FraudEvidence | None], LearnerHistory]:
    """The signals of one attempt that need only its learner and item.

    Rapid response (against ``item``/``skill`` *before* this answer), person misfit
    over the history with this answer pushed (``calibrated`` item parameters, or the
    Rasch proxy), and velocity. Returns the evidence (None where a signal is silent)
    and the learner's history after the answer. Collusion needs other learners and
    is added by :func:`score_attempts`; the false-positive bench replays logs through
    this too.
    """
    evidence: list[FraudEvidence | None] = [
        rapid_response(
            response_time_ms=scored.response_time_ms,
            correct=scored.correct,
            item=item,
            skill=skill,
            config=config,
        )
    ]
    params = calibrated or (1.0, difficulty_proxy(item, skill), 0.0)
    history = history.push(
        scored.event_id, scored.occurred_at, scored.score, params, config.history_size
    )
    evidence.append(person_misfit(history.a, history.b, history.c, history.scores, config))
    times = [t.timestamp() for t in history.occurred_at]
    evidence.append(velocity(times, scored.occurred_at.timestamp(), config))
    return evidence, history


class _AttemptBatch:
    """The working state of :func:`score_attempts` (inputs plus this batch's changes)."""

    def __init__(self, inputs: AttemptInputs, config: FraudConfig) -> None:
        self.inputs = inputs
        self.config = config
        self.out = AttemptOutcome(
            histories=dict(inputs.histories),
            references=dict(inputs.references),
            wrong_counts=dict(inputs.wrong_counts),
        )
        self.partners: dict[SubjectKey, set[str]] = {}
        self.signals: dict[SubjectKey, SignalRow | None] = {}

    def partners_of(self, subject: SubjectKey) -> set[str]:
        """The partner learners of an attempt: stored, plus found in this batch."""
        if subject not in self.partners:
            self.partners[subject] = set(self.inputs.partners.get(subject, ()))
        return self.partners[subject]

    def signal_of(self, subject: SubjectKey) -> SignalRow | None:
        """The subject's fraud_signals row: this batch's version, else the stored one."""
        if subject not in self.signals:
            self.signals[subject] = self.inputs.signals.get(subject)
        return self.signals[subject]

    def set_signal(self, subject: SubjectKey, row: SignalRow, cause_event_id: str) -> None:
        self.signals[subject] = row
        self.out.signals[subject] = row
        self.out.scored.append(Rescore(subject, row, cause_event_id))

    def score(self, scored: ScoredAnswer) -> None:
        """Score one attempt (a repeat of one in the learner's history scores nothing)."""
        out = self.out
        learner = (scored.tenant_id, scored.user_id)
        history = out.histories.get(learner, LearnerHistory())
        if scored.event_id in history.event_ids:
            return  # the same attempt delivered again: already counted
        item_key = ReferenceKey(scored.tenant_id, "item", scored.item_id)
        skill_keys = [ReferenceKey(scored.tenant_id, "skill", s) for s in scored.skill_ids]
        item_ref = out.references.get(item_key, EMPTY_REFERENCE)
        evidence, history = individual_evidence(
            scored,
            history=history,
            item=item_ref,
            skill=out.references.get(skill_keys[0], EMPTY_REFERENCE),
            calibrated=self.inputs.item_params.get((scored.tenant_id, scored.item_id)),
            config=self.config,
        )
        out.histories[learner] = history
        if not scored.correct and scored.response is not None:
            evidence.append(self.collusion(scored, scored.response, item_ref))
            answer = AnswerKey(scored.tenant_id, scored.item_id, scored.response)
            out.wrong_counts[answer] = out.wrong_counts.get(answer, 0) + 1
        for key in (item_key, *skill_keys):
            out.references[key] = observe(
                out.references.get(key, EMPTY_REFERENCE),
                response_time_ms=scored.response_time_ms,
                correct=scored.correct,
                config=self.config,
            )
        found = tuple(sorted((e for e in evidence if e is not None), key=lambda e: e.signal.value))
        if found:
            row = SignalRow(
                user_id=scored.user_id,
                session_id=scored.session_id,
                item_id=scored.item_id,
                device_id="",
                occurred_at=scored.occurred_at,
                evidence=found,
                last_cause_id=scored.event_id,
            )
            self.set_signal(
                SubjectKey(scored.tenant_id, ATTEMPT, scored.event_id), row, row.last_cause_id
            )

    def matches(
        self, scored: ScoredAnswer, answer_key: AnswerKey, groups: Sequence[str]
    ) -> dict[str, GroupAnswer]:
        """Other learners' same wrong answers in ``groups`` within the window, by event_id."""
        window = timedelta(seconds=self.config.collusion_window_s)
        low, high = scored.occurred_at - window, scored.occurred_at + window
        matches: dict[str, GroupAnswer] = {}
        # Stored answers first (one per event: its first group in order), then this batch's.
        stored = sorted(self.inputs.stored_answers, key=lambda s: (s[1].event_id, s[1].group_key))
        for answers in (stored, self.out.new_answers):
            for key, answer in answers:
                if (
                    key == answer_key
                    and answer.group_key in groups
                    and answer.user_id != scored.user_id
                    and low <= answer.occurred_at <= high
                ):
                    matches.setdefault(answer.event_id, answer)
        return matches

    def collusion(
        self, scored: ScoredAnswer, response: str, item_ref: ResponseReference
    ) -> FraudEvidence | None:
        """Collusion evidence for a wrong answer; re-scores its partners' attempts."""
        groups = list(self.inputs.groups.get((scored.tenant_id, scored.user_id), ()))
        if scored.session_id:
            groups.append(f"session:{scored.session_id}")
        if not groups:
            return None
        answer_key = AnswerKey(scored.tenant_id, scored.item_id, response)
        matches = self.matches(scored, answer_key, groups)
        self.out.new_answers.extend(
            (
                answer_key,
                GroupAnswer(
                    g, scored.user_id, scored.session_id, scored.event_id, scored.occurred_at
                ),
            )
            for g in groups
        )
        if not matches:
            return None
        wrong_total = item_ref.answers - item_ref.correct
        count = self.out.wrong_counts.get(answer_key, 0)
        if not is_uncommon(count, wrong_total, len(matches), self.config):
            return None
        own = SubjectKey(scored.tenant_id, ATTEMPT, scored.event_id)
        self.partners[own] = {m.user_id for m in matches.values()}
        self.out.new_partners.update((own, m.user_id) for m in matches.values())
        for match in sorted(matches.values(), key=lambda m: m.event_id):
            self.rescore_partner(scored, response, match)
        return collusion(len(self.partners[own]), response, self.config)

    def rescore_partner(self, scored: ScoredAnswer, response: str, match: GroupAnswer) -> None:
        """Add ``scored``'s learner to the partners of ``match``'s attempt and re-score it."""
        partner = SubjectKey(scored.tenant_id, ATTEMPT, match.event_id)
        partner_users = self.partners_of(partner)
        if scored.user_id in partner_users:
            return
        partner_users.add(scored.user_id)
        self.out.new_partners.add((partner, scored.user_id))
        row = self.signal_of(partner) or SignalRow(
            user_id=match.user_id,
            session_id=match.session_id,
            item_id=scored.item_id,
            device_id="",
            occurred_at=match.occurred_at,
            evidence=(),
            last_cause_id=match.event_id,
        )
        new_row = replace(
            row.with_evidence(
                collusion(len(partner_users), response, self.config), FraudSignalKind.COLLUSION
            ),
            last_cause_id=scored.event_id,
        )
        self.set_signal(partner, new_row, scored.event_id)


def score_attempts(
    attempts: Sequence[ScoredAnswer],
    inputs: AttemptInputs,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> AttemptOutcome:
    """Score ``attempts`` in order against ``inputs``; every change and score, in order.

    Each attempt sees what the previous ones left (histories, references, wrong-answer
    counts, group answers, partners), so one batch gives what the same attempts scored
    one by one give. ``scored`` lists, per attempt, its partners' re-scores (by
    partner event_id) and then its own score when any signal fired.
    """
    batch = _AttemptBatch(inputs, config)
    for scored in attempts:
        batch.score(scored)
    return batch.out


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SightingInputs:
    """What a batch of sightings reads: device sessions and the session signal rows.

    ``device_sessions`` must hold every stored session on the sighted devices within
    twice the device window of the sighted sessions (first and last seen, UTC);
    ``signals`` the stored rows of all of those sessions.
    """

    device_sessions: Mapping[DeviceSessionKey, tuple[datetime, datetime]]
    signals: Mapping[SubjectKey, SignalRow]


@dataclass(slots=True)
class SightingOutcome:
    """What a batch of sightings writes, and the scores to announce in order."""

    device_sessions: dict[DeviceSessionKey, tuple[datetime, datetime]]  # the sighted keys
    signals: dict[SubjectKey, SignalRow] = field(default_factory=dict)
    scored: list[Rescore] = field(default_factory=list)


def score_sightings(
    sightings: Sequence[Sighting],
    inputs: SightingInputs,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> SightingOutcome:
    """Record each sighting on its device; re-score every session near it on the device."""
    window = timedelta(seconds=config.device_window_s)
    sessions = dict(inputs.device_sessions)
    out = SightingOutcome(device_sessions={})
    for sighting in sightings:
        key = DeviceSessionKey(
            sighting.tenant_id, sighting.device_id, sighting.session_id, sighting.user_id
        )
        first_seen, last_seen = sessions.get(key, (sighting.occurred_at, sighting.occurred_at))
        seen = (min(first_seen, sighting.occurred_at), max(last_seen, sighting.occurred_at))
        sessions[key] = out.device_sessions[key] = seen
        nearby = sorted(
            (k.session_id, k.user_id, first, last)
            for k, (first, last) in sessions.items()
            if k.tenant_id == key.tenant_id
            and k.device_id == key.device_id
            and last >= seen[0] - 2 * window
            and first <= seen[1] + 2 * window
        )
        for session_id, user_id, first, last in nearby:
            # Only sessions within the window of this one can have gained an account.
            if last < seen[0] - window or first > seen[1] + window:
                continue
            accounts = {
                other_user
                for _, other_user, other_first, other_last in nearby
                if other_last >= first - window and other_first <= last + window
            }
            found = shared_device(len(accounts), config)
            subject = SubjectKey(sighting.tenant_id, SESSION, session_id)
            row = out.signals.get(subject) or inputs.signals.get(subject)
            if found is None and row is None:
                continue
            base = row or SignalRow(
                user_id=user_id,
                session_id=session_id,
                item_id="",
                device_id=sighting.device_id,
                occurred_at=first,
                evidence=(),
                last_cause_id=sighting.event_id,
            )
            new_row = replace(
                base.with_evidence(found, FraudSignalKind.SHARED_DEVICE),
                last_cause_id=sighting.event_id,
            )
            if row is not None and new_row.evidence == row.evidence:
                continue
            out.signals[subject] = new_row
            out.scored.append(Rescore(subject, new_row, sighting.event_id))
    return out

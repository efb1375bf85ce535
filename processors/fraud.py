"""The fraud processor: attempts and sessions in, fraud scores out.

Per attempt (AttemptEvent, key ``tenant:user``): rapid response against the item's
rolling response-time median, person misfit (lz*) over the learner's recent answers,
collusion (the same uncommon wrong answer as other learners of a class or shared
session within a window) and impossible velocity. Per session (SessionEvent with a
``device_id``): many accounts on one device.

Per batch, like :mod:`processors.learner_state`: everything the batch reads is loaded
first (:func:`learnstream.views.fraud.load_attempt_inputs`, ``load_sighting_inputs``),
the batch is scored in offset order by the pure :mod:`scheduler.fraud_batch` (signals
in :mod:`scheduler.fraud`), then everything it changed is written.

Outputs: ``fraud_signals`` (one row per attempt or session whose score is above 0;
no row means 0), with the per-signal weights, the reasons, and ``flagged`` when the
score reaches ``settings.fraud_alert_threshold`` (views ``flagged_attempts`` and
``flagged_sessions`` are what analyses join to exclude them); a ``FraudScored``
event per scored subject and per later re-score. Fraud never changes mastery: this
processor writes no mastery table, and learner_state does not read these.

Item parameters. Person fit uses the calibrated IRT parameters of
``irt_item_parameters`` (filled by the calibration DAG) when the item has them;
otherwise a Rasch proxy (:func:`scheduler.fraud.difficulty_proxy`: ``a = 1, c = 0``
and ``b`` from the item's correct rate, shrunk toward its skill's). Either is frozen
into the learner's history when the answer is scored, so a recalibration does not
rewrite the past.

State, and what "exactly once" means here. Per-learner state (recent answers) lives
with the learner's partition, so it is applied in order and exactly once by the
offsets machinery of :mod:`processors.base`. Cross-learner state (item and skill
response-time histograms, wrong-answer counts, group answers, collusion partners,
device sessions) is shared by all partitions; every batch locks the rows it reads
(created first when missing, so two workers never both insert), so concurrent
workers never lose an update (:mod:`learnstream.views.fraud`). Collusion partners
and device sessions are insert/extend-only and both sides of a match are re-scored,
so their final effect does not depend on which side came first; but a score computed
from an item's median or from "is this wrong answer uncommon" is a real-time judgment
made with what the other partitions had delivered when the batch was loaded, so two
runs that interleave partitions differently (with or without a crash) can differ in
those scores. Within one partition's order everything is deterministic (event time,
never the clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from learnstream.db import Connection
from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.views import fraud as fraud_view
from processors.base import Decoded, Flow
from processors.events import Attempt, SessionSighting, decode_attempt, decode_session
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, derived_event_id
from scheduler.fraud import (
    DEFAULT_FRAUD_CONFIG,
    FraudConfig,
    FraudSignalKind,
    normalize_response,
)
from scheduler.fraud_batch import (
    ATTEMPT,
    Rescore,
    SignalRow,
    SubjectKey,
    score_attempts,
    score_sightings,
)

_SIGNAL_TO_PROTO = {
    FraudSignalKind.RAPID_RESPONSE: derived_pb2.FRAUD_SIGNAL_RAPID_RESPONSE,
    FraudSignalKind.PERSON_MISFIT: derived_pb2.FRAUD_SIGNAL_PERSON_MISFIT,
    FraudSignalKind.COLLUSION: derived_pb2.FRAUD_SIGNAL_COLLUSION,
    FraudSignalKind.IMPOSSIBLE_VELOCITY: derived_pb2.FRAUD_SIGNAL_IMPOSSIBLE_VELOCITY,
    FraudSignalKind.SHARED_DEVICE: derived_pb2.FRAUD_SIGNAL_SHARED_DEVICE,
}


# --- decoded events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoredAttempt:
    """An attempt with the fields fraud scoring needs beyond the mastery ones."""

    attempt: Attempt
    item_id: str
    response: str | None  # normalized; None when empty
    response_time_ms: int  # 0: not reported

    # The attempt's own fields, as scheduler.fraud_batch.ScoredAnswer reads them.
    @property
    def event_id(self) -> str:
        return self.attempt.event_id

    @property
    def tenant_id(self) -> str:
        return self.attempt.tenant_id

    @property
    def user_id(self) -> str:
        return self.attempt.user_id

    @property
    def session_id(self) -> str:
        return self.attempt.session_id

    @property
    def skill_ids(self) -> tuple[str, ...]:
        return self.attempt.skill_ids

    @property
    def correct(self) -> bool:
        return self.attempt.correct

    @property
    def score(self) -> float:
        return self.attempt.score

    @property
    def occurred_at(self) -> datetime:
        return self.attempt.occurred_at


FraudInput = ScoredAttempt | SessionSighting


def decode_scored_attempt(record: SourceRecord) -> ScoredAttempt:
    """An AttemptEvent validated by :func:`decode_attempt`, plus item, answer and time."""
    attempt = decode_attempt(record)
    assert record.value is not None  # decode_attempt refuses a missing value
    event = attempt_pb2.AttemptEvent.FromString(record.value)
    if event.response_time_ms < 0:
        raise PoisonEvent(f"event {attempt.event_id}: response_time_ms is negative")
    return ScoredAttempt(
        attempt=attempt,
        item_id=event.item_id,
        response=normalize_response(event.response),
        response_time_ms=event.response_time_ms,
    )


class FraudProcessor:
    """Fraud scores per attempt and per session; see the module docstring."""

    name = "fraud"
    flow = Flow(
        reads=(Stream.ATTEMPTS, Stream.SESSIONS),
        writes=(
            "fraud_signals",
            "fraud_learner_history",
            "fraud_reference_stats",
            "fraud_wrong_answer_counts",
            "fraud_group_wrong_answers",
            "fraud_collusion_partners",
            "fraud_device_sessions",
        ),
        emits=(Stream.FRAUD,),
    )
    sources = flow.reads

    def __init__(self, settings: Settings, *, config: FraudConfig = DEFAULT_FRAUD_CONFIG) -> None:
        self.config = config
        self.alert_threshold = settings.fraud_alert_threshold
        self._attempts_topic = settings.topic(Stream.ATTEMPTS)
        self._sessions_topic = settings.topic(Stream.SESSIONS)
        self._fraud_topic = settings.topic(Stream.FRAUD)

    def decode(self, record: SourceRecord) -> FraudInput:
        if record.topic == self._sessions_topic:
            return decode_session(record)
        return decode_scored_attempt(record)

    def event_id(self, event: FraudInput) -> str:
        return event.attempt.event_id if isinstance(event, ScoredAttempt) else event.event_id

    async def apply(
        self, conn: Connection, batch: Sequence[Decoded[FraudInput]]
    ) -> list[OutgoingRecord]:
        """Score ``batch`` (attempts, then sessions: their state is disjoint); FraudScored out."""
        attempts = [i.event for i in batch if isinstance(i.event, ScoredAttempt)]
        sightings = [
            i.event
            for i in batch
            if isinstance(i.event, SessionSighting) and i.event.device_id and i.event.session_id
        ]
        scored: list[Rescore] = []
        if attempts:
            inputs = await fraud_view.load_attempt_inputs(conn, attempts, self.config)
            outcome = score_attempts(attempts, inputs, self.config)
            await fraud_view.store_attempt_outcome(conn, outcome, self.alert_threshold)
            scored.extend(outcome.scored)
        if sightings:
            seen = await fraud_view.load_sighting_inputs(conn, sightings, self.config)
            sighted = score_sightings(sightings, seen, self.config)
            await fraud_view.store_sighting_outcome(conn, sighted, self.alert_threshold)
            scored.extend(sighted.scored)
        return [
            self._fraud_scored(s.subject, s.row, cause_event_id=s.cause_event_id) for s in scored
        ]

    # -- events -------------------------------------------------------------------------

    def _fraud_scored(
        self, subject: SubjectKey, row: SignalRow, *, cause_event_id: str
    ) -> OutgoingRecord:
        """The FraudScored record of ``row``, keyed by its learner.

        ``cause_event_id`` is the event whose processing (re-)scored the subject; the
        record's event_id derives from it and the subject, so a replay repeats it
        exactly. The message's cause_event_id names the subject: the attempt's
        event_id, or for a session the SessionEvent that caused the score
        (``envelope.session_id`` names the session).
        """
        envelope = envelope_pb2.Envelope(
            event_id=derived_event_id(
                cause_event_id, f"fraud_scored:{subject.kind}:{subject.subject_id}"
            ),
            tenant_id=subject.tenant_id,
            user_id=row.user_id,
            session_id=row.session_id,
            source=envelope_pb2.Source(app="learnstream-processors", platform="server"),
        )
        envelope.occurred_at.FromDatetime(row.occurred_at)
        score = row.score
        message = derived_pb2.FraudScored(
            envelope=envelope,
            cause_event_id=subject.subject_id if subject.kind == ATTEMPT else cause_event_id,
            score=score,
            reasons=[
                derived_pb2.FraudReason(
                    signal=_SIGNAL_TO_PROTO[e.signal], weight=e.weight, detail=e.detail
                )
                for e in row.evidence
            ],
            alert=score >= self.alert_threshold,
        )
        return OutgoingRecord(
            topic=self._fraud_topic,
            key=learner_key(subject.tenant_id, row.user_id),
            value=message.SerializeToString(),
        )

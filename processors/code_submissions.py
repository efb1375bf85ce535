"""The code-submissions processor: a submission in, its analysis recorded, an attempt out.

For every CodeSubmissionEvent (key ``tenant:user``):

* **Python** (``language`` python, python3 or py): the source is analysed statically
  (:mod:`processors.code_metrics`: cyclomatic complexity, size, nesting depth,
  constructs used). Each construct maps to a concept skill
  (:data:`processors.code_metrics.CONSTRUCT_SKILLS`), e.g. recursion to
  ``python.recursion``.
* **Other languages**: no analysis; the test result is the only signal.
* The correctness signal is ``score = tests_passed / tests_total``.

The ``code_submissions`` view records every submission once (its status, the
reason when it could not be analysed, the metrics and construct skills, a SHA-256
of the source), and a submission with a mastery signal becomes an **AttemptEvent**
published to the attempts topic: item = the exercise, skills = the exercise's skills
plus the construct skills, ``score`` as above, ``correct`` when every test passed,
event_id derived deterministically from the submission's. The learner-state
processor then moves mastery, ability and the review schedule exactly as for any
other answer, and stays the only writer of ``skill_mastery`` (so one learner's
updates never interleave between two processors), the lake gets code attempts too,
and a repeat of the derived attempt (after a crash here) is dropped there by its
event_id.

Why construct skills take the test score: using a construct is not proof of
knowing it, but a construct used in code that passes its tests is evidence, and one
used in code that fails is evidence the other way; BKT's guess and slip (fitted
per skill by the bkt_fit DAG once data exists) absorb how weak that evidence is.

A submission that cannot be analysed (status ``unparsable``: a syntax error, null
bytes, nesting deeper than the parser or :data:`~processors.code_metrics.MAX_TREE_DEPTH`
allows) is recorded with its reason and changes **no** mastery, not even through
its tests: the source we were given is not something Python can run, so either the
upload is corrupted (and so may be its test result) or it targets another grammar
than ours, and nothing says which. The row keeps ``tests_passed``/``tests_total``,
so an analysis that wants that signal still has it. ``tests_total = 0`` (status
``no_tests``) carries no signal either. A record that is not a valid
CodeSubmissionEvent (bad protobuf, ids, passed > total) is dead-lettered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from learnstream.events.v1 import attempt_pb2, code_submission_pb2, envelope_pb2
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    OutgoingRecord,
    Stream,
    learner_key,
)
from learnstream.settings import Settings
from processors import metrics
from processors.base import Decoded, Flow
from processors.code_metrics import CodeMetrics, UnparsableSource, analyze_python
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, decode_learner_event, derived_event_id

NAME = "code_submissions"
PYTHON_NAMES = frozenset({"python", "python3", "py"})
DERIVED_KIND = "code_attempt"


@dataclass(frozen=True, slots=True)
class Submission:
    """The fields of a CodeSubmissionEvent, validated."""

    event_id: str  # UUID string
    tenant_id: str
    user_id: str
    session_id: str
    item_id: str
    item_version: int  # 0 when unknown
    skill_ids: tuple[str, ...]  # no duplicates, event order
    language: str  # lower case
    source: str
    tests_passed: int  # 0 <= tests_passed <= tests_total
    tests_total: int
    runtime_ms: int  # >= 0
    occurred_at: datetime  # UTC
    received_at: datetime | None  # UTC


@dataclass(frozen=True, slots=True)
class Assessment:
    """What one submission amounts to (pure output of :func:`assess`)."""

    status: str  # analyzed | tests_only | unparsable | no_tests
    reason: str | None
    score: float | None  # tests_passed / tests_total, in [0, 1]
    metrics: CodeMetrics | None
    construct_skills: tuple[str, ...]
    attempt_skills: tuple[str, ...]  # skills of the derived attempt; empty means no attempt


def decode_submission(record: SourceRecord) -> Submission:
    """Parse and validate a CodeSubmissionEvent record; PoisonEvent says what is wrong."""
    event, event_id = decode_learner_event(record, code_submission_pb2.CodeSubmissionEvent)
    envelope = event.envelope
    if not event.item_id:
        raise PoisonEvent(f"event {event_id}: item_id is required")
    if not 0 <= event.tests_passed <= event.tests_total:
        raise PoisonEvent(
            f"event {event_id}: tests_passed {event.tests_passed} is not within "
            f"[0, tests_total {event.tests_total}]"
        )
    if event.runtime_ms < 0 or event.item_version < 0:
        raise PoisonEvent(f"event {event_id}: runtime_ms and item_version must be >= 0")
    return Submission(
        event_id=event_id,
        tenant_id=envelope.tenant_id,
        user_id=envelope.user_id,
        session_id=envelope.session_id,
        item_id=event.item_id,
        item_version=event.item_version,
        skill_ids=tuple(dict.fromkeys(s for s in event.skill_ids if s)),
        language=event.language.strip().lower(),
        source=event.source,
        tests_passed=event.tests_passed,
        tests_total=event.tests_total,
        runtime_ms=event.runtime_ms,
        occurred_at=envelope.occurred_at.ToDatetime(tzinfo=UTC),
        received_at=(
            envelope.received_at.ToDatetime(tzinfo=UTC)
            if envelope.HasField("received_at")
            else None
        ),
    )


def assess(submission: Submission) -> Assessment:
    """Status, metrics and the skills of the derived attempt; pure (see the module docstring)."""
    score = submission.tests_passed / submission.tests_total if submission.tests_total > 0 else None
    analysis: CodeMetrics | UnparsableSource | None = None
    if submission.language in PYTHON_NAMES:
        analysis = analyze_python(submission.source)
    if isinstance(analysis, UnparsableSource):
        return Assessment("unparsable", analysis.reason, score, None, (), ())
    constructs = analysis.construct_skills if analysis is not None else ()
    status = "analyzed" if analysis is not None else "tests_only"
    if score is None:
        return Assessment("no_tests", "tests_total is 0", None, analysis, constructs, ())
    skills = tuple(dict.fromkeys((*submission.skill_ids, *constructs)))
    reason = None if skills else "no skills to update"
    return Assessment(status, reason, score, analysis, constructs, skills)


def derived_attempt(
    submission: Submission, assessment: Assessment, *, topic: str
) -> OutgoingRecord | None:
    """The AttemptEvent a submission with a mastery signal becomes; None without one.

    Every field comes from the submission (no clock), so a repeat is identical.
    """
    if not assessment.attempt_skills or assessment.score is None:
        return None
    envelope = envelope_pb2.Envelope(
        event_id=derived_event_id(submission.event_id, DERIVED_KIND),
        tenant_id=submission.tenant_id,
        user_id=submission.user_id,
        session_id=submission.session_id,
        source=envelope_pb2.Source(app="learnstream-processors", platform="server"),
    )
    envelope.occurred_at.FromDatetime(submission.occurred_at)
    if submission.received_at is not None:
        envelope.received_at.FromDatetime(submission.received_at)
    attempt = attempt_pb2.AttemptEvent(
        envelope=envelope,
        item_id=submission.item_id,
        item_version=submission.item_version,
        skill_ids=assessment.attempt_skills,
        correct=submission.tests_passed == submission.tests_total,
        score=assessment.score,
        context=attempt_pb2.ATTEMPT_CONTEXT_PRACTICE,
    )
    return OutgoingRecord(
        topic=topic,
        key=learner_key(submission.tenant_id, submission.user_id),
        value=attempt.SerializeToString(),
        headers=(
            (EVENT_TYPE_HEADER, attempt.DESCRIPTOR.full_name.encode()),
            (EVENT_ID_HEADER, envelope.event_id.encode()),
        ),
    )


_INSERT = """
    INSERT INTO code_submissions (tenant_id, event_id, user_id, item_id, language, status,
                                  reason, tests_passed, tests_total, score, runtime_ms, metrics,
                                  construct_skills, attempt_event_id, source_sha256,
                                  source_chars, occurred_at)
    SELECT r.tenant_id, r.event_id, r.user_id, r.item_id, r.language, r.status, r.reason,
           r.tests_passed, r.tests_total, r.score, r.runtime_ms, r.metrics::jsonb,
           string_to_array(r.construct_skills, ','), r.attempt_event_id, r.source_sha256,
           r.source_chars, r.occurred_at
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::int[], $9::int[], $10::float8[], $11::bigint[], $12::text[],
                $13::text[], $14::uuid[], $15::bytea[], $16::int[], $17::timestamptz[])
      AS r(tenant_id, event_id, user_id, item_id, language, status, reason, tests_passed,
           tests_total, score, runtime_ms, metrics, construct_skills, attempt_event_id,
           source_sha256, source_chars, occurred_at)
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING event_id
"""


class CodeSubmissionsProcessor:
    """Static analysis of code submissions and their attempts (module docstring)."""

    name = NAME
    flow = Flow(
        reads=(Stream.CODE_SUBMISSIONS,), writes=("code_submissions",), emits=(Stream.ATTEMPTS,)
    )
    sources = flow.reads

    def __init__(self, settings: Settings) -> None:
        self._attempts_topic = settings.topic(Stream.ATTEMPTS)

    def decode(self, record: SourceRecord) -> Submission:
        return decode_submission(record)

    def event_id(self, event: Submission) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Submission]]
    ) -> list[OutgoingRecord]:
        """Record the batch's submissions (once each); return their derived attempts."""
        submissions = list({item.event.event_id: item.event for item in batch}.values())
        assessed = [(s, assess(s)) for s in submissions]
        attempts = {
            s.event_id: derived_attempt(s, a, topic=self._attempts_topic) for s, a in assessed
        }
        rows = await conn.fetch(
            _INSERT,
            [s.tenant_id for s, _ in assessed],
            [s.event_id for s, _ in assessed],
            [s.user_id for s, _ in assessed],
            [s.item_id for s, _ in assessed],
            [s.language for s, _ in assessed],
            [a.status for _, a in assessed],
            [a.reason for _, a in assessed],
            [s.tests_passed for s, _ in assessed],
            [s.tests_total for s, _ in assessed],
            [a.score for _, a in assessed],
            [s.runtime_ms for s, _ in assessed],
            [None if a.metrics is None else json.dumps(a.metrics.as_json()) for _, a in assessed],
            [",".join(a.construct_skills) for _, a in assessed],
            [
                None if attempts[s.event_id] is None else derived_event_id(s.event_id, DERIVED_KIND)
                for s, _ in assessed
            ],
            [
                hashlib.sha256(s.source.encode("utf-8", "surrogatepass")).digest()
                for s, _ in assessed
            ],
            [len(s.source) for s, _ in assessed],
            [s.occurred_at for s, _ in assessed],
        )
        new = {str(row["event_id"]) for row in rows}
        for _, assessment in assessed:
            metrics.CODE_SUBMISSIONS.labels(assessment.status).inc()
        # A submission recorded before (a retry past ingest) already published its attempt.
        return [
            record
            for s, _ in assessed
            if s.event_id in new and (record := attempts[s.event_id]) is not None
        ]

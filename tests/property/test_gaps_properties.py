"""Gap verdicts stay in range, follow their rules, and do not depend on batch boundaries.

The last property is what the kill -9 test relies on: a crash splits the stream into
different batches, and the rows and announcements must come out the same.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from processors.events import LearnerKey, MasteryChange, SkillEvidence
from processors.gaps import GapChange, GapRow, chain_gaps
from scheduler.gaps import (
    DEFAULT_GAP_CONFIG,
    ConceptGraph,
    GapState,
    assess,
    confidence,
    next_state,
    severity,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
probabilities = st.floats(0.0, 1.0)
states = st.sampled_from([None, *GapState])
SKILLS = ("s0", "s1", "s2", "s3", "s4")
GRAPH = ConceptGraph({"s1": ["s0"], "s2": ["s1"], "s3": ["s1", "s0"], "s4": ["s3"]})


@given(p=probabilities, attempts=st.integers(0, 500), blocked=st.integers(0, 100))
def test_confidence_and_severity_are_in_unit_interval(
    p: float, attempts: int, blocked: int
) -> None:
    assert 0.0 <= confidence(p, attempts) <= 1.0
    assert 0.0 <= severity(p, blocked, age_s=attempts * 3600.0) <= 1.0


@given(previous=states, p=probabilities, attempts=st.integers(0, 50))
def test_a_gap_opens_only_with_enough_evidence_and_closes_only_by_resolving(
    previous: GapState | None, p: float, attempts: int
) -> None:
    state = next_state(previous, p, attempts)
    if state is GapState.OPEN and previous is not GapState.OPEN:
        assert attempts >= DEFAULT_GAP_CONFIG.min_attempts
        assert p < DEFAULT_GAP_CONFIG.open_below
    if previous is GapState.OPEN:
        assert state in (GapState.OPEN, GapState.RESOLVED)
    if state is GapState.RESOLVED and previous is GapState.OPEN:
        assert p >= DEFAULT_GAP_CONFIG.resolve_at


@given(previous=states, p=probabilities, attempts=st.integers(0, 50))
def test_severity_is_zero_unless_open(previous: GapState | None, p: float, attempts: int) -> None:
    verdict = assess(
        skill_id="s0",
        previous=previous,
        p_mastery=p,
        attempts=attempts,
        last_evidence_at=T0,
        now=T0 + timedelta(hours=attempts),
        graph=GRAPH,
        learner_mastery={"s1": p},
    )
    if verdict.state is not GapState.OPEN:
        assert verdict.severity == 0.0
    assert 0 <= verdict.blocked_skills <= len(GRAPH.dependents("s0"))


@st.composite
def mastery_streams(draw: st.DrawFn) -> list[MasteryChange]:
    """MasteryUpdated events of two learners, attempts counting up per skill, with repeats."""
    count = draw(st.integers(1, 40))
    attempts: dict[tuple[str, str], int] = {}
    changes: list[MasteryChange] = []
    for n in range(count):
        user = draw(st.sampled_from(["u1", "u2"]))
        repeat = draw(st.integers(0, 3)) == 0
        if changes and repeat:
            changes.append(changes[-1])  # an at-least-once repeat
            continue
        skills = draw(st.lists(st.sampled_from(SKILLS), min_size=1, max_size=2, unique=True))
        evidence = []
        for skill in skills:
            attempts[(user, skill)] = attempts.get((user, skill), 0) + 1
            evidence.append(SkillEvidence(skill, draw(probabilities), attempts[(user, skill)]))
        changes.append(
            MasteryChange(
                event_id=str(uuid.UUID(int=n + 1)),
                tenant_id="t",
                user_id=user,
                session_id="",
                occurred_at=T0 + timedelta(minutes=n),
                skills=tuple(evidence),
            )
        )
    return changes


@given(changes=mastery_streams(), cuts=st.lists(st.integers(0, 40), max_size=5))
def test_batch_boundaries_do_not_change_rows_or_announcements(
    changes: list[MasteryChange], cuts: list[int]
) -> None:
    graphs = {"t": GRAPH}
    whole_rows, whole_events = chain_gaps(changes, {}, graphs)
    bounds = sorted({0, len(changes), *(c for c in cuts if c < len(changes))})
    rows: dict[LearnerKey, dict[str, GapRow]] = {}
    events: list[GapChange] = []
    for start, end in itertools.pairwise(bounds):
        after, announced = chain_gaps(changes[start:end], rows, graphs)
        rows.update(after)
        events.extend(announced)
    assert rows == whole_rows
    assert [(e.change.event_id, e.skill_id, e.row) for e in events] == [
        (e.change.event_id, e.skill_id, e.row) for e in whole_events
    ]

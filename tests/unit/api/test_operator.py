"""Operator rules: fraud reasons, the alert cursor, per-group lag folding, /metrics parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.pagination import decode_cursor
from api.services import operator
from api.services.operator import FraudAlert, SubjectKind, group_lags, worker_metrics

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_reasons_come_heaviest_first_from_json_text_or_lists() -> None:
    raw = (
        '[{"signal": "velocity", "weight": 0.2, "detail": "12 answers/min"},'
        ' {"signal": "rapid_response", "weight": 0.9, "detail": "1.1 s"}]'
    )
    reasons = operator.reasons_from_json(raw)
    assert [r.signal for r in reasons] == ["rapid_response", "velocity"]
    assert operator.reasons_from_json([{"signal": "collusion"}])[0].weight == 0.0
    assert operator.reasons_from_json(None) == []


def test_alert_cursor_round_trips_and_rejects_forgeries() -> None:
    alert = FraudAlert(SubjectKind.SESSION, "s|1", "u", "s|1", "", "", NOW, 0.9, [], None)
    assert decode_cursor(operator.alert_cursor(alert), operator.parse_alert_cursor) == (
        NOW,
        "session",
        "s|1",
    )
    with pytest.raises(ValueError, match="bogus"):
        operator.parse_alert_cursor("2024-05-01T12:00:00+00:00|bogus|x")
    with pytest.raises(ValueError, match="not enough values"):
        operator.parse_alert_cursor("no separators")


def offsets(
    group: str, topic: str, partition: int, next_offset: int, age_s: float
) -> dict[str, object]:
    return {
        "consumer_group": group,
        "topic": topic,
        "partition": partition,
        "next_offset": next_offset,
        "updated_at": NOW - timedelta(seconds=age_s),
    }


def test_group_lags_sum_partitions_and_never_go_negative() -> None:
    rows = [
        offsets("ls.learner_state", "ls.attempts.v1", 0, 90, 30),
        offsets("ls.learner_state", "ls.attempts.v1", 1, 50, 5),
        offsets("ls.gaps", "ls.mastery.v1", 0, 10, 2),
    ]
    ends = {("ls.attempts.v1", 0): 100, ("ls.attempts.v1", 1): 40, ("ls.mastery.v1", 0): 10}
    groups = {g.processor: g for g in group_lags(rows, ends, namespace="ls", now=NOW)}
    state = groups["learner_state"].topics[0]
    # 10 behind on partition 0; partition 1's end below the commit reads as 0, not -10.
    assert (state.partitions, state.committed, state.end_offset, state.lag) == (2, 140, 140, 10)
    assert state.seconds_since_commit == pytest.approx(5.0)
    assert groups["learner_state"].lag == 10
    assert groups["gaps"].lag == 0
    unknown = group_lags(rows, None, namespace="ls", now=NOW)
    assert all(g.lag is None and g.topics[0].end_offset is None for g in unknown)


def test_worker_metrics_sum_lag_by_processor_and_topic_and_count_stalls() -> None:
    stalled = "learnstream_processor_partition_stalled"
    page = "\n".join(
        [
            "# TYPE learnstream_processor_consumer_lag gauge",
            'learnstream_processor_consumer_lag{partition="0",processor="mastery",topic="t"} 4.0',
            'learnstream_processor_consumer_lag{partition="1",processor="mastery",topic="t"} 3.0',
            "# TYPE learnstream_processor_partition_stalled gauge",
            stalled + '{partition="0",processor="mastery",topic="t"} 1.0',
            stalled + '{partition="1",processor="mastery",topic="t"} 0.0',
            "",
        ]
    )
    found = worker_metrics("http://w1/metrics", page)
    assert found.lag == {"mastery t": 7}
    assert found.stalled_partitions == 1
    assert found.reachable
    assert found.error is None

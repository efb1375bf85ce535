"""The record built for each kind of event: topic, key, value bytes, headers."""

from __future__ import annotations

import pytest

from ingest.batch import STREAM_OF_KIND, build_record
from ingest.dedup import pending_ttl_s
from ingest.metrics import IngestMetrics
from ingest.validation import EVENT_KINDS
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import EVENT_ID_HEADER, EVENT_TYPE_HEADER, Stream, learner_key
from learnstream.settings import Settings

SETTINGS = Settings(kafka_topic_namespace="ns")


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_kind_goes_to_its_topic_as_its_own_message(kind: str) -> None:
    event = ingest_pb2.LearningEvent()
    message = getattr(event, kind)
    message.envelope.tenant_id = "t1"
    message.envelope.user_id = "u1"
    message.envelope.event_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    record = build_record(kind, message, SETTINGS)
    assert record.topic == SETTINGS.topic(STREAM_OF_KIND[kind])
    assert record.key == learner_key("t1", "u1")
    assert type(message).FromString(record.value) == message
    assert dict(record.headers) == {
        EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name.encode(),
        EVENT_ID_HEADER: b"0f8fad5b-d9cb-469f-a165-70867728950e",
    }


def test_every_kind_has_a_distinct_input_topic() -> None:
    assert set(STREAM_OF_KIND) == set(EVENT_KINDS)
    assert len(set(STREAM_OF_KIND.values())) == len(EVENT_KINDS)
    assert Stream.ATTEMPTS in STREAM_OF_KIND.values()


def test_a_pending_claim_outlives_the_longest_publish() -> None:
    settings = Settings(ingest_delivery_timeout_ms=5_500)
    # librdkafka reports every record within message.timeout.ms (6 x the wait) + margin.
    assert pending_ttl_s(settings) > 6 * 5.5 + 5


def test_rejection_metrics_drop_indices_from_field_paths() -> None:
    metrics = IngestMetrics()
    metrics.count_rejection("attempt.skill_ids[3]")
    metrics.count_rejection("attempt.skill_ids[7]")
    metrics.count_rejection('activity.attributes["page"]')
    metrics.count_rejection("")
    rendered = metrics.render().decode()
    assert 'learnstream_ingest_rejections_total{field="attempt.skill_ids[]"} 2.0' in rendered
    assert 'learnstream_ingest_rejections_total{field="activity.attributes[]"} 1.0' in rendered
    assert 'learnstream_ingest_rejections_total{field="event"} 1.0' in rendered

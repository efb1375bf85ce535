"""The thin ingestion API: validate learning events, deduplicate them, publish, answer.

``POST /v1/events`` takes an ``IngestRequest`` (protobuf or its JSON mapping) and
answers an ``IngestResponse`` with one result per event, only after the broker
acknowledged every accepted event. Run it with ``python -m ingest``.
"""

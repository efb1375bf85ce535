"""The recommendations processor's side of experiments: which one runs, and exposures.

A session that opens under a running session-strategy experiment takes the strategy of
the learner's variant (:mod:`scheduler.experiments`); the processor then publishes an
ExperimentExposure, with an event id derived from its cause so a replay repeats it.
"""

from __future__ import annotations

import asyncpg

from learnstream.events.v1 import envelope_pb2, experiment_pb2
from learnstream.kafka import OutgoingRecord, learner_key
from processors.events import MasteryChange
from processors.offsets import derived_event_id
from scheduler.experiments import RunningExperiment, Variant, variants_from_json

EXPOSURE_KIND = "experiment_exposure"

# The running experiment on session strategies, per tenant (at most one: a unique index).
_RUNNING_EXPERIMENTS = """
    SELECT tenant_id, experiment_id::text AS experiment_id, variants FROM experiments
    WHERE status = 'running' AND target = 'recommendation_strategy'
      AND tenant_id = ANY($1::text[])
"""


async def running_experiments(
    conn: asyncpg.Connection, tenants: list[str]
) -> dict[str, RunningExperiment]:
    """Each tenant's running session-strategy experiment (tenants without one are absent)."""
    return {
        r["tenant_id"]: RunningExperiment(r["experiment_id"], variants_from_json(r["variants"]))
        for r in await conn.fetch(_RUNNING_EXPERIMENTS, tenants)
    }


def experiment_exposure(
    change: MasteryChange, exposure: tuple[RunningExperiment, Variant], *, topic: str
) -> OutgoingRecord:
    """The ExperimentExposure of the session that ``change`` opened under an experiment."""
    experiment, variant = exposure
    envelope = envelope_pb2.Envelope(
        event_id=derived_event_id(change.event_id, EXPOSURE_KIND),
        tenant_id=change.tenant_id,
        user_id=change.user_id,
        session_id=change.session_id,
        source=envelope_pb2.Source(app="learnstream-processors", platform="server"),
    )
    envelope.occurred_at.FromDatetime(change.occurred_at)
    message = experiment_pb2.ExperimentExposure(
        envelope=envelope,
        cause_event_id=change.event_id,
        experiment_id=experiment.experiment_id,
        variant=variant.name,
        strategy=variant.strategy,
        target=experiment_pb2.EXPERIMENT_TARGET_RECOMMENDATION_STRATEGY,
    )
    return OutgoingRecord(
        topic=topic,
        key=learner_key(change.tenant_id, change.user_id),
        value=message.SerializeToString(),
    )

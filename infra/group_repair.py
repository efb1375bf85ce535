"""Unstick a processor's consumer group on Tansu: ``python -m infra.group_repair P``.

Tansu v0.6.0 keeps a member that sent LeaveGroup while the group was re-forming as the
group's leader (docs/operations.md, "A consumer group that assigns nothing"). Every
member then joins as a follower of a leader that will never assign, for ever.

This joins the group with the processor's own assignor (Tansu admits only members of
the group's protocol) and watches it: if a follower's SyncGroup still gets no
assignment after two session timeouts and the JoinGroup answers keep naming the same
leader, that leader is gone. It then joins once under the departed leader's member id
(Tansu accepts any id) and sends nothing more: after the session timeout Tansu expires
that member, which clears the leader, and the next worker to join leads and assigns.
It never sends LeaveGroup (leaving a re-forming group is what causes the fault).
A healthy group only sees one extra member that expires after the session timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.group import JoinGroupRequest, SyncGroupRequest

from learnstream.exceptions import LearnstreamError
from learnstream.settings import Settings, get_settings

# aiokafka's error codes of the two answers this reads.
_NONE, _MEMBER_ID_REQUIRED = 0, 79


async def repair(settings: Settings, processor: str, *, timeout_s: float = 60.0) -> str:
    """Check the group of ``processor``; clear a departed leader. Returns what it found."""
    from infra.rebuild_view import source_topics
    from processors.app import app_id, create_app

    group = app_id(settings, processor)
    assignor: Any = create_app(settings, processor).assignor  # Faust's, typed loosely
    metadata = assignor.metadata(set(source_topics(settings, processor))).encode()
    session_ms = int(settings.consumer_session_timeout_s * 1000)
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)

        async def join(member_id: str) -> Any:
            request = JoinGroupRequest(
                group, session_ms, session_ms, member_id, None, "consumer",
                [(assignor.name, metadata)],
            )  # fmt: skip
            answer = await client.send(node, request)
            if answer.error_code not in (_NONE, _MEMBER_ID_REQUIRED):
                raise LearnstreamError(f"JoinGroup of {group} failed: error {answer.error_code}")
            return answer

        answer = await join("")
        member = answer.member_id
        if answer.error_code == _MEMBER_ID_REQUIRED:
            answer = await join(member)
        leader, since = answer.leader_id, time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            if answer.leader_id == member:
                return f"group {group} is healthy (it had no leader; this member led)"
            sync = await client.send(
                node, SyncGroupRequest(group, answer.generation_id, member, None, [])
            )
            if sync.error_code == _NONE:
                return f"group {group} is healthy (leader {answer.leader_id} assigned)"
            if answer.leader_id != leader:
                leader, since = answer.leader_id, time.monotonic()
            elif time.monotonic() - since > 2 * settings.consumer_session_timeout_s:
                await join(leader)
                return (
                    f"group {group} was stuck behind departed leader {leader}; cleared: "
                    f"workers get partitions within about {2 * session_ms / 1000:.0f} s"
                )
            await asyncio.sleep(1.0)
            answer = await join(member)
        raise LearnstreamError(f"could not tell within {timeout_s:.0f} s whether {group} is stuck")
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.group_repair", description=__doc__)
    parser.add_argument("processor", help="the processor whose consumer group to check")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(repair(get_settings(), args.processor, timeout_s=args.timeout)))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()

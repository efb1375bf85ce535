"""``make demo``: the whole pipeline on real data, on local defaults.

1. Starts (or checks) the broker, PostgreSQL and Redis; migrates; creates topics.
2. Creates a demo tenant API key; seeds the tenant (:mod:`infra.demo_content`): one
   published question per replayed item through the CMS workflow, and IRT/BKT
   parameters calibrated by the DAG jobs' functions on the replayed answers themselves.
3. Starts the ingest API, the stream processors and the read API as background
   processes (PIDs and logs in ``.run/``).
4. Replays a real dataset (``LEARNSTREAM_DEMO_DATASET``, default ASSISTments 2009 with
   problem ids, its first ``LEARNSTREAM_DEMO_MAX_LEARNERS`` learners) through
   ``POST /v1/events`` with a progress bar, re-dated into the last weeks
   (:func:`infra.replay.rebase_to_recent`); without the dataset it replays simulated
   learners instead. First the answers before last midnight (UTC); then last night's
   ``dkt_retrain`` run on the lake (the DAG's five steps in this process), which makes
   the first DKT model champion; then today's answers, scored by it.
5. After each part, waits until the mastery view has absorbed every accepted answer
   and the other processors are quiet; prints a summary, with a few learners' mastery
   read back through the read API.

The services keep running for exploration; ``make stop`` ends them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from tqdm import tqdm

from infra import demo_accounts, demo_content, demo_summary, replay, services
from learnstream import db, lake
from learnstream.events.v1 import ingest_pb2
from learnstream.exceptions import LearnstreamError
from learnstream.settings import Settings, get_settings

PROTOBUF = "application/x-protobuf"
SENDERS = 4  # concurrent HTTP senders, each owning a disjoint set of learners
BATCH_SIZE = 500
# Stream processors the demo starts (python -m processors NAME); each gets its own
# /metrics port, processor_web_port + its index (0 keeps them all off).
PROCESSORS = (
    "learner_state",
    "code_submissions",
    "lake_sink",
    "gaps",
    "fraud",
    "aggregates",
    "recommendations",
    "notifications",
    "predictions",
)
# What the summary counts, per view: (label, SQL over the demo tenant's rows).
VIEW_COUNTS = (
    ("skill_mastery rows", "SELECT count(*) FROM skill_mastery WHERE tenant_id = $1"),
    ("learner_ability rows", "SELECT count(*) FROM learner_ability WHERE tenant_id = $1"),
    ("review_schedule rows", "SELECT count(*) FROM review_schedule WHERE tenant_id = $1"),
    ("attempts history", "SELECT count(*) FROM attempts WHERE tenant_id = $1"),
    (
        "open knowledge gaps",
        "SELECT count(*) FROM knowledge_gaps WHERE tenant_id = $1 AND status = 'open'",
    ),
    ("fraud-flagged answers", "SELECT count(*) FROM flagged_attempts WHERE tenant_id = $1"),
    ("activity aggregates", "SELECT count(*) FROM activity_aggregates WHERE tenant_id = $1"),
    ("recommendation rows", "SELECT count(*) FROM recommendations WHERE tenant_id = $1"),
    ("notifications", "SELECT count(*) FROM notifications WHERE tenant_id = $1"),
    ("skill predictions", "SELECT count(*) FROM skill_predictions WHERE tenant_id = $1"),
)


@dataclass
class ReplayTotals:
    """What ingest answered for the replay."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_event_ids: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, other: ReplayTotals) -> None:
        """Count ``other`` (a later phase of the same replay) in too."""
        self.outcomes.update(other.outcomes)
        self.reasons.update(other.reasons)
        self.rejected_event_ids |= other.rejected_event_ids
        self.seconds += other.seconds


def start_process(settings: Settings, name: str, module_args: list[str]) -> int:
    """Start ``python -m <module_args>`` in the background; PID and log in run_dir."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.run_dir / f"{name}.pid"
    if pid_file.exists():
        services.stop_pid(int(pid_file.read_text()))
    log_path = settings.run_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            env={**os.environ, **settings.as_env()},  # children see exactly these settings
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def stop_all(settings: Settings) -> list[str]:
    """Stop every process whose PID file is in run_dir (services, processors, broker)."""
    stopped = []
    for pid_file in sorted(settings.run_dir.glob("*.pid")):
        if services.stop_pid(int(pid_file.read_text().strip())):
            stopped.append(pid_file.stem)
        pid_file.unlink()
    return stopped


async def wait_ready(url: str, *, timeout_s: float, log_path: Path) -> None:
    """Poll ``url`` until it answers 200, or fail pointing at the service's log."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise LearnstreamError(f"{url} not ready after {timeout_s}s; see {log_path}")


async def start_pipeline(settings: Settings, processors: tuple[str, ...] = PROCESSORS) -> None:
    """Start ingest, ``processors`` and the read API in the background; wait until ready.

    Processor ``/metrics`` ports are ``processor_web_port`` + their index (0: all off).
    """
    start_process(settings, "ingest", ["ingest"])
    for index, name in enumerate(processors):
        port = settings.processor_web_port + index if settings.processor_web_port else 0
        start_process(settings, f"processor-{name}", ["processors", name, "--web-port", str(port)])
    start_process(settings, "api", ["api"])
    for name, port in (("ingest", settings.ingest_port), ("api", settings.api_port)):
        await wait_ready(
            f"http://127.0.0.1:{port}/readyz",
            timeout_s=60,
            log_path=settings.run_dir / f"{name}.log",
        )


async def post_replay(
    settings: Settings, api_key: str, requests: list[list[ingest_pb2.IngestRequest]], total: int
) -> ReplayTotals:
    """Post every request, one sender per shard, retrying 503s; count the outcomes."""
    totals = ReplayTotals()
    url = f"http://127.0.0.1:{settings.ingest_port}/v1/events"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": PROTOBUF, "Accept": PROTOBUF}
    progress = tqdm(total=total, unit="ev", desc="replaying", file=sys.stderr)

    async def send(client: httpx.AsyncClient, shard: list[ingest_pb2.IngestRequest]) -> None:
        for request in shard:
            body = request.SerializeToString()
            for attempt in range(20):
                answer = await client.post(url, content=body, headers=headers)
                if answer.status_code != 503:
                    break
                await asyncio.sleep(float(answer.headers.get("Retry-After", 1)) * (1 + attempt / 4))
            if answer.status_code != 200:
                raise LearnstreamError(f"ingest answered {answer.status_code}: {answer.text[:500]}")
            result = ingest_pb2.IngestResponse.FromString(answer.content)
            for item in result.results:
                status = ingest_pb2.EventStatus.Name(item.status).removeprefix("EVENT_STATUS_")
                totals.outcomes[status.lower()] += 1
                if item.status == ingest_pb2.EVENT_STATUS_REJECTED:
                    totals.rejected_event_ids.add(item.event_id)
                    totals.reasons[f"{item.field}: {item.reason}"] += 1
            progress.update(len(request.events))

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60.0) as client:
        await asyncio.gather(*(send(client, shard) for shard in requests))
    totals.seconds = time.perf_counter() - started
    progress.close()
    return totals


async def wait_for_mastery(settings: Settings, tenant_id: str, expected: int) -> float:
    """Wait until skill_mastery counts ``expected`` answers for the tenant; seconds waited."""
    started = time.perf_counter()
    conn = await db.connect(settings)
    progress = tqdm(total=expected, unit="ans", desc="processing", file=sys.stderr)
    try:
        deadline = time.monotonic() + 600
        counted = 0
        while time.monotonic() < deadline:
            counted = int(
                await conn.fetchval(
                    "SELECT coalesce(sum(attempts), 0) FROM skill_mastery WHERE tenant_id = $1",
                    tenant_id,
                )
            )
            progress.update(counted - progress.n)
            if counted >= expected:
                return time.perf_counter() - started
            await asyncio.sleep(0.5)
        raise LearnstreamError(
            f"the mastery view counted {counted} of {expected} answers after 10 minutes; "
            f"see {settings.run_dir / 'processor-learner_state.log'}"
        )
    finally:
        progress.close()
        await conn.close()


async def wait_for_downstream(settings: Settings, *, quiet_s: float = 4.0) -> None:
    """Wait until every processor's stored offsets stop moving for ``quiet_s`` seconds.

    The processors after mastery (gaps, recommendations, ...) read derived topics, so
    they finish a little later; the broker's end offsets cannot tell us (Tansu reports
    them wrongly), the offsets stored in PostgreSQL can.
    """
    conn = await db.connect(settings)
    try:
        last, quiet_since = None, time.monotonic()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            total = await conn.fetchval(
                "SELECT coalesce(sum(next_offset), 0) FROM processor_offsets"
            )
            if total != last:
                last, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def view_counts(settings: Settings, tenant_id: str) -> list[tuple[str, int]]:
    """Row counts of the views for the tenant (missing views are skipped)."""
    conn = await db.connect(settings)
    try:
        counts = []
        for label, query in VIEW_COUNTS:
            try:
                counts.append((label, int(await conn.fetchval(query, tenant_id))))
            except asyncpg.UndefinedTableError:
                continue
        return counts
    finally:
        await conn.close()


def expected_answers(
    attempts: list[replay.ReplayAttempt],
    events: list[ingest_pb2.LearningEvent],
    rejected_event_ids: set[str],
) -> int:
    """Skill answers the mastery view will count for these attempts (one per skill).

    Duplicates count too: their first run already put them in the view.
    """
    return sum(
        len(attempt.skill_ids)
        for attempt, event in zip(attempts, events, strict=True)
        if event.attempt.envelope.event_id not in rejected_event_ids
    )


async def wait_for_lake(settings: Settings, tenant_id: str, expected_rows: int) -> None:
    """Wait until the lake holds ``expected_rows`` attempts of the tenant (lake sink flushed).

    The lake sink writes a batch every ``lake_batch_within_s``; the offsets the other
    processors store say nothing about it, the lake's own partitions do.
    """
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline:
        partitions = lake.list_partitions(lake.default_root(settings))
        rows = sum(p.rows for p in partitions if p.tenant_id == tenant_id)
        if rows >= expected_rows:
            return
        await asyncio.sleep(1.0)
    raise LearnstreamError(
        f"the lake holds {rows} of {expected_rows} attempts after 2 minutes; "
        f"see {settings.run_dir / 'processor-lake_sink.log'}"
    )


def train_champion(settings: Settings, midnight: datetime) -> dict[str, object] | None:
    """Last night's ``dkt_retrain`` run: the data interval of the day before ``midnight``.

    The same five steps the DAG runs (:func:`ml.jobs.dkt_retrain.run_interval`), on the
    demo's lake; the first model registered becomes the champion.
    """
    import torch

    from ml.jobs.common import Interval
    from ml.jobs.dkt_retrain import RetrainOptions, run_interval

    # The services run beside it on the same cores: torch's default of one thread per
    # core spins against them (165 s per epoch measured on a busy 2-core box; `python
    # -m ml train` defaults to one thread for the same reason).
    torch.set_num_threads(1)
    interval = Interval(midnight - timedelta(days=1), midnight)
    return run_interval(settings, interval, RetrainOptions(), run_id="make-demo")


async def replay_phase(
    settings: Settings,
    api_key: str,
    attempts: list[replay.ReplayAttempt],
    events: list[ingest_pb2.LearningEvent],
    *,
    answers_before: int,
) -> tuple[ReplayTotals, int, float]:
    """Post ``events`` and wait for the views; returns (totals, answers counted, seconds)."""
    requests = replay.shard_by_learner(events, SENDERS, BATCH_SIZE)
    totals = await post_replay(settings, api_key, requests, len(events))
    answers = answers_before + expected_answers(attempts, events, totals.rejected_event_ids)
    processing_s = await wait_for_mastery(settings, settings.demo_tenant, answers)
    await wait_for_downstream(settings)
    return totals, answers, processing_s


async def create_people(settings: Settings, learners: list[str]) -> list[demo_accounts.DemoSignIn]:
    """The demo's teacher, class, learners and operator (:mod:`infra.demo_accounts`)."""
    from learnstream.redis import redis_client

    pool = await db.create_pool(settings, max_size=2)
    client = redis_client(settings)
    try:
        return await demo_accounts.ensure_accounts(
            pool,
            client,
            settings,
            tenant_id=settings.demo_tenant,
            learner_ids_in_order=learners,
            now=datetime.now(UTC),
        )
    finally:
        await client.aclose()
        await pool.close()


async def run_demo(settings: Settings) -> None:
    """The whole demo; see the module docstring."""
    tenant_id = settings.demo_tenant
    api_key = await create_replay_key(settings)
    dataset, attempts = replay.load_replay(
        settings.dataset_dir, settings.demo_dataset, max_learners=settings.demo_max_learners
    )
    if dataset == "simulated":
        print(
            f"dataset {settings.demo_dataset} not found under {settings.dataset_dir}; "
            "replaying simulated learners instead",
            file=sys.stderr,
        )
    # The logs are from 2009: date them into the last weeks, newest a minute ago.
    now = datetime.now(UTC)
    attempts = replay.rebase_to_recent(attempts, end_at=now - timedelta(minutes=1))
    events = [replay.attempt_event(a, dataset=dataset, tenant_id=tenant_id) for a in attempts]
    # Before the processors start, so their caches load the catalog and parameters.
    print("publishing demo content and calibrating on the replayed answers ...", file=sys.stderr)
    seeded = await seed_content(settings, dataset, attempts, events)

    print("starting ingest, processors and read API ...", file=sys.stderr)
    await start_pipeline(settings)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals, processing_s, champion = await replay_around_midnight(
        settings, api_key, attempts, events, midnight=midnight
    )
    counts = await view_counts(settings, tenant_id)
    lake_files = len(list(lake.default_root(settings).rglob("*.parquet")))

    learners = list(replay.iter_learners(attempts))
    sign_ins = await create_people(settings, learners)
    summary = demo_summary.DemoSummary(
        dataset=dataset,
        attempts=attempts,
        learners=learners,
        outcomes=totals.outcomes,
        reasons=totals.reasons,
        replay_s=totals.seconds,
        processing_s=processing_s,
        seeded=seeded,
        champion=champion,
        view_counts=counts,
        lake_files=lake_files,
    )
    demo_summary.print_summary(settings, summary)
    await demo_summary.show_learners(settings, api_key, learners[:3])
    demo_summary.print_next_steps(settings, sign_ins)


async def create_replay_key(settings: Settings) -> str:
    """A new API key of the demo tenant that posts the replay and reads a few learners'
    mastery back (events:write, views:read); its plaintext."""
    from learnstream.apikeys import Scope, create_api_key

    conn = await db.connect(settings)
    try:
        created = await create_api_key(
            conn,
            tenant_id=settings.demo_tenant,
            app_name="demo-replay",
            scopes={Scope.EVENTS_WRITE, Scope.VIEWS_READ},
        )
        return created.plaintext
    finally:
        await conn.close()


async def seed_content(
    settings: Settings,
    dataset: str,
    attempts: list[replay.ReplayAttempt],
    events: list[ingest_pb2.LearningEvent],
) -> demo_content.SeedCounts:
    """Publish the demo tenant's catalog and calibrate it (:func:`infra.demo_content.seed`),
    IRT items on the dataset's whole calibration corpus where it has one."""
    tenant_id = settings.demo_tenant
    corpus = replay.item_calibration_corpus(
        settings.dataset_dir, settings.demo_dataset, {a.item_id for a in attempts}
    )
    item_corpus = None
    if corpus:
        corpus_events = [
            replay.attempt_event(a, dataset=f"{dataset}-corpus", tenant_id=tenant_id)
            for a in corpus
        ]
        item_corpus = demo_content.lake_rows(corpus, corpus_events)
    return await demo_content.seed(settings, tenant_id, attempts, events, item_corpus)


async def replay_around_midnight(
    settings: Settings,
    api_key: str,
    attempts: list[replay.ReplayAttempt],
    events: list[ingest_pb2.LearningEvent],
    *,
    midnight: datetime,
) -> tuple[ReplayTotals, float, dict[str, object] | None]:
    """Replay the answers before ``midnight`` (UTC), run last night's DKT retrain on the
    lake, then replay today's answers, which the predictions processor scores with the
    new champion. Returns (totals of both parts, the last part's processing seconds,
    the champion or None when there was nothing before midnight to train on)."""
    earlier = [i for i, a in enumerate(attempts) if a.occurred_at < midnight]
    today = [i for i, a in enumerate(attempts) if a.occurred_at >= midnight]
    phases = [(midnight, earlier), (None, today)]
    totals = ReplayTotals()
    answers = 0
    processing_s = 0.0
    champion: dict[str, object] | None = None
    for train_at, indices in phases:
        if not indices:
            continue
        phase_totals, answers, processing_s = await replay_phase(
            settings,
            api_key,
            [attempts[i] for i in indices],
            [events[i] for i in indices],
            answers_before=answers,
        )
        totals.add(phase_totals)
        if train_at is not None:
            await wait_for_lake(
                settings, settings.demo_tenant, len(indices) - len(totals.rejected_event_ids)
            )
            print("training last night's DKT model on the lake (dkt_retrain) ...", file=sys.stderr)
            champion = await asyncio.to_thread(train_champion, settings, train_at)
    return totals, processing_s, champion


async def reset(settings: Settings) -> None:
    """Forget everything the demo stored: the database, this namespace's Redis keys, the lake."""
    import shutil

    from learnstream.redis import redis_client

    await db.drop_database(settings)
    client = redis_client(settings)
    try:
        async for key in client.scan_iter(match=f"{settings.redis_namespace}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
    shutil.rmtree(settings.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["run", "stop", "reset"], default="run")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "stop":
        stopped = stop_all(settings)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return
    if args.command == "reset":
        stopped = stop_all(settings)
        asyncio.run(reset(settings))
        print(f"stopped {stopped or 'nothing'}; dropped the database, Redis keys and lake")
        return
    try:
        services.up(settings)
        asyncio.run(run_demo(settings))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("Stop what did start with `make stop`.", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()

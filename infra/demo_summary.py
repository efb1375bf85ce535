"""What ``make demo`` prints at the end: the replay's figures, a few learners' mastery
read back through the read API, where the services are and how to sign in.

Printing only: :mod:`infra.demo` gathers the figures (:class:`DemoSummary`) and calls
these in order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import httpx

from infra import demo_accounts, demo_content, replay
from learnstream import lake
from learnstream.settings import Settings


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo replayed, seeded and left in the views, as the summary prints it."""

    dataset: str  # the replayed dataset's name, or "simulated"
    attempts: list[replay.ReplayAttempt]  # rebased to the last weeks; one event each
    learners: list[str]  # replayed learner ids, in first-seen order
    outcomes: Counter[str]  # events per ingest outcome: accepted, duplicate, rejected
    reasons: Counter[str]  # rejected events per "field: reason"
    replay_s: float  # seconds spent posting the replay, all parts together
    processing_s: float  # last part: seconds from the last POST until the view caught up
    seeded: demo_content.SeedCounts
    champion: dict[str, object] | None  # the DKT model registered, None if not trained
    view_counts: list[tuple[str, int]]  # (label, rows of the demo tenant) per view
    lake_files: int  # Parquet files under the lake root


def print_summary(settings: Settings, summary: DemoSummary) -> None:
    """Print what was replayed, seeded and trained, and the views' row counts."""
    attempts, seeded, champion = summary.attempts, summary.seeded, summary.champion
    skills = {skill for a in attempts for skill in a.skill_ids}
    print()
    print(
        f"Learnstream demo — {summary.dataset}: {len(attempts):,} answers, "
        f"{len(summary.learners):,} learners"
    )
    print(f"  accepted   {summary.outcomes['accepted']:>9,}")
    print(f"  duplicates {summary.outcomes['duplicate']:>9,}  (re-runs replay the same event ids)")
    print(f"  rejected   {summary.outcomes['rejected']:>9,}")
    for reason, count in summary.reasons.most_common(5):
        print(f"    {count:>7,} × {reason}")
    print(f"  ingest     {len(attempts) / summary.replay_s:>9,.0f} events/s over HTTP")
    print(f"  processed  all answers {summary.processing_s:.1f} s after the last POST returned")
    print(f"  skills     {len(skills):>9,}")
    print(
        f"  dated      {min(a.occurred_at for a in attempts):%Y-%m-%d} to "
        f"{max(a.occurred_at for a in attempts):%Y-%m-%d %H:%M} UTC (rebased from 2009)"
    )
    print(
        f"  seeded     {seeded.published_items:>9,} published questions over {seeded.skills} "
        f"skills; {seeded.irt_items:,} IRT items and {seeded.bkt_skills} BKT skills calibrated"
    )
    print(
        "             on the replayed answers (IRT items on every learner of the log who "
        "answered them); in production the DAGs calibrate from the lake"
    )
    if champion is None:
        print("  DKT model  not trained (too few answers before midnight)")
    else:
        print(
            f"  DKT model  {settings.ml_model_name} version {champion['version']} is "
            f"{champion['alias']} ({champion['reason']}); `python -m ml show` lists versions"
        )
    print("Views (PostgreSQL) and lake:")
    for label, count in summary.view_counts:
        print(f"  {label:<24} {count:>9,}")
    lake_root = lake.default_root(settings)
    print(f"  {'lake Parquet files':<24} {summary.lake_files:>9,}  under {lake_root}")


async def show_learners(settings: Settings, api_key: str, learners: list[str]) -> None:
    """Print a few learners' mastery as the read API returns it."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        for user_id in learners:
            answer = await client.get(
                f"http://127.0.0.1:{settings.api_port}/v1/learners/{user_id}/mastery",
                headers={"Authorization": f"Bearer {api_key}"},
            )
            answer.raise_for_status()
            print(f"  learner {user_id}:")
            for skill in answer.json()["skills"]:
                print(
                    f"    {skill['skill_id']:<28} p_mastery={skill['p_mastery']:.3f} "
                    f"({skill['label']}, {skill['attempts']} attempts)"
                )


def print_next_steps(settings: Settings, sign_ins: list[demo_accounts.DemoSignIn]) -> None:
    """Where the services' docs and logs are, how to sign in, and how to stop."""
    print()
    print(f"Ingest API  http://127.0.0.1:{settings.ingest_port}/docs")
    print(f"Read API    http://127.0.0.1:{settings.api_port}/docs")
    print(f"Logs        {settings.run_dir}/*.log")
    print()
    print_sign_ins(settings, sign_ins)
    print("The services keep running. Stop everything with `make stop`.")


def print_sign_ins(settings: Settings, sign_ins: list[demo_accounts.DemoSignIn]) -> None:
    """How to sign in on the dashboard as each demo person."""
    dashboard = f"http://127.0.0.1:{settings.api_port}/dashboard"
    print(f"Sign in at {dashboard} with tenant {settings.demo_tenant!r}:")
    for person in sign_ins:
        whose = f"  (replayed learner {person.learner_id})" if person.learner_id else ""
        print(f"  {person.role:<9} {person.email:<40} password {person.password}{whose}")
        if person.totp_secret:
            print(f"            TOTP secret {person.totp_secret} (add it to an authenticator app,")
            print(f"            or: oathtool --totp -b {person.totp_secret})")
            print(f"            {person.otpauth_uri}")
    print(
        f"  The teacher's class holds the first {demo_accounts.CLASS_SIZE} replayed learners; "
        "the password is kept in "
        f"{settings.data_dir / 'secrets' / 'demo_password'}."
    )

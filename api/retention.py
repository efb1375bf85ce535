"""Apply tenants' retention: ``python -m api.retention [--dry-run]``.

Erases every account inactive longer than its tenant's ``retention_days`` through the
ordinary, audited erasure (:mod:`api.services.retention`) and prints one line per
learner and a total. ``--dry-run`` prints who is due and changes nothing. Meant for a
daily scheduler (cron, Airflow).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from api.services.retention import RetentionRun, apply_retention
from learnstream import db
from learnstream.redis import redis_client
from learnstream.settings import Settings, get_settings


async def run_retention(settings: Settings, *, dry_run: bool, now: datetime) -> RetentionRun:
    """One retention pass against the configured PostgreSQL and Redis; ``now`` is UTC."""
    pool = await db.create_pool(settings, max_size=2)
    redis = redis_client(settings)
    try:
        return await apply_retention(pool, redis, settings, now=now, dry_run=dry_run)
    finally:
        await redis.aclose()
        await pool.close()


def format_run(run: RetentionRun) -> str:
    """The pass as text: one line per learner due or erased, then a total."""
    lines: list[str] = []
    total = 0
    for tenant_id, due in run.due.items():
        if run.dry_run:
            lines.extend(f"would erase {tenant_id}/{user_id}" for user_id in due)
            total += len(due)
            continue
        for report in run.erased.get(tenant_id, []):
            rows = sum(report.rows_deleted.values())
            lines.append(
                f"erased {tenant_id}/{report.subject_id}: {rows} rows, "
                f"account={'yes' if report.account_deleted else 'no'}, "
                f"{report.redis_keys_deleted} cache keys"
            )
            total += 1
    verb = "would erase" if run.dry_run else "erased"
    lines.append(f"{verb} {total} learner(s) in {len(run.due)} tenant(s) with a retention set")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run one pass, print what it did; exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m api.retention", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="list who is due, erase nothing")
    args = parser.parse_args(argv)
    run = asyncio.run(run_retention(get_settings(), dry_run=args.dry_run, now=datetime.now(UTC)))
    print(format_run(run))  # noqa: T201 - a command-line entry point reports on stdout
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The summary ``make demo`` prints, from the figures it gathered (no services)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra import demo_summary
from infra.demo_accounts import DemoSignIn
from infra.demo_content import SeedCounts
from infra.replay import ReplayAttempt
from learnstream.settings import Settings

START = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def summary(champion: dict[str, object] | None) -> demo_summary.DemoSummary:
    attempts = [
        ReplayAttempt(
            row,
            f"u{row % 2}",
            f"i{row}",
            ("fractions",),
            row % 3 == 0,
            START + timedelta(minutes=row),
        )
        for row in range(6)
    ]
    return demo_summary.DemoSummary(
        dataset="simulated",
        attempts=attempts,
        learners=["u0", "u1"],
        outcomes=Counter({"accepted": 5, "rejected": 1}),
        reasons=Counter({"attempt.item_id: required": 1}),
        replay_s=2.0,
        processing_s=1.5,
        seeded=SeedCounts(skills=1, published_items=6, irt_items=6, bkt_skills=1),
        champion=champion,
        view_counts=[("skill_mastery rows", 2)],
        lake_files=3,
    )


def test_the_summary_prints_the_replay_the_seed_and_the_views(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, run_dir=tmp_path)
    demo_summary.print_summary(settings, summary(None))
    out = capsys.readouterr().out
    assert "Learnstream demo — simulated: 6 answers, 2 learners" in out
    assert "  accepted           5" in out
    assert "  duplicates         0" in out
    assert "        1 × attempt.item_id: required" in out
    assert "          3 events/s over HTTP" in out
    assert "dated      2024-03-01 to 2024-03-01 09:35 UTC" in out
    assert "not trained" in out
    assert "  skill_mastery rows               2" in out
    assert "  lake Parquet files               3" in out


def test_a_champion_and_the_sign_ins_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, run_dir=tmp_path)
    champion: dict[str, object] = {"version": "1", "alias": "champion", "reason": "first"}
    demo_summary.print_summary(settings, summary(champion))
    demo_summary.print_next_steps(
        settings,
        [
            DemoSignIn("teacher", "teacher@t.example.org", "pw"),
            DemoSignIn("operator", "op@t.example.org", "pw", totp_secret="ABC", otpauth_uri="otp"),
        ],
    )
    out = capsys.readouterr().out
    assert "version 1 is champion (first)" in out
    assert "teacher   teacher@t.example.org" in out
    assert "TOTP secret ABC" in out
    assert out.rstrip().endswith("Stop everything with `make stop`.")

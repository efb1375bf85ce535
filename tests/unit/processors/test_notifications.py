"""The pure step of the notifications processor: digests, stalls, ids, quiet hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

from processors.events import LearnerKey, MasteryChange, MasteryStep
from processors.events import SkillEvidence as Reported
from processors.notifications import NotifyRow, Preferences, chain_notifications
from scheduler.notify import NotifyConfig

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
KEY = LearnerKey("t", "u")
CONFIG = NotifyConfig(digest_period=timedelta(hours=24), stall_sessions=2, stall_gain=0.01)


def step(minutes: float, p_before: float, p: float, attempts: int) -> MasteryStep:
    change = MasteryChange(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{minutes}-{attempts}")),
        tenant_id="t",
        user_id="u",
        session_id="",
        occurred_at=T0 + timedelta(minutes=minutes),
        skills=(Reported("add", p, attempts),),
    )
    return MasteryStep(change, {"add": p_before})


def test_many_due_items_and_events_give_one_digest_per_period() -> None:
    due = {KEY: {"a": T0 - timedelta(days=1), "b": T0, "c": T0 + timedelta(hours=30)}}
    steps = [step(60 * h, 0.5, 0.5, h + 1) for h in range(0, 48, 3)]
    notices = chain_notifications(steps, {}, due, {}, CONFIG)
    digests = [n for n in notices if n.kind == "review_due"]
    # Periods are UTC days: Mar 1 (from 08:00), Mar 2 (first event 02:00, before c is
    # due at 14:00), Mar 3 (c due by then); one digest each, whatever the event count.
    assert [n.item_ids for n in digests] == [("a", "b"), ("a", "b"), ("a", "b", "c")]
    assert len({n.notification_id for n in digests}) == 3


def test_flat_sessions_give_one_strategy_suggestion_per_run() -> None:
    # Each event an hour apart is its own session; none raises mastery.
    steps = [step(60 * n, 0.4, 0.4, n + 1) for n in range(6)]
    notices = chain_notifications(steps, {}, {}, {}, CONFIG)
    suggestions = [n for n in notices if n.kind == "strategy_suggestion"]
    # Sessions close when the next opens: 5 closed flat sessions -> suggestions after 2 and 4.
    assert len(suggestions) == 2


def test_quiet_hours_delay_delivery_and_replays_repeat_ids() -> None:
    prefs = {KEY: Preferences(("in_app", "webhook"), (time(7, 0), time(9, 0)), "UTC")}
    steps = [step(0, 0.9, 0.96, 1)]  # 08:00 UTC, inside quiet hours; a mastery milestone
    rows: dict[LearnerKey, NotifyRow] = {}
    notices = chain_notifications(steps, rows, {}, prefs, CONFIG)
    assert {n.kind for n in notices} == {"milestone"}
    assert all(n.deliver_after == T0 + timedelta(hours=1) for n in notices)
    assert all(n.channels == ("in_app", "webhook") for n in notices)
    assert chain_notifications(steps, {}, {}, prefs, CONFIG) == notices
    # The same learner state seen again: no second milestone for the same skill.
    assert chain_notifications([step(5, 0.96, 0.97, 2)], rows, {}, prefs, CONFIG) == []

"""The dashboard page in headless Chromium, on real data, against the real API over HTTP.

Proves: a learner and a teacher sign in on the page with the auth endpoints; the
learner's mastery and progress charts draw exactly what the dashboard endpoint
returned, which is what the views hold (skill_mastery and attempts filled by the
processors' own code from a slice of ASSISTments 2009 as.csv, filed under the
learners' app ids through the learner-id mapping); the page updates by itself when new
answers land; the teacher sees the class heat map and label chart and drills down to a
learner; a learner takes the placement test by clicking; an operator signs in with a
TOTP code and dismisses a fraud alert. Screenshots go to the test's tmp dir (and to
docs/img/dashboard.png when that file does not exist yet: delete it to refresh the
README's picture).

Needs Debian's chromium at /usr/bin/chromium (``make setup-browser``); Playwright drives
it as is, ``playwright install`` is never run.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from api.app import create_app
from api.services import learner_ids, mfa
from api.services.mastery import mastery_label
from api.services.principals import Role
from infra import services
from infra.replay import ReplayAttempt, assistments_as_csv
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, enrol_mfa, make_user
from tests.integration.api.seeding import (
    calibrate,
    ensure_skill,
    publish_question,
    replay_into_views,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DATASET = "assistments2009_pybkt_as_2020"
README_IMAGE = Path(__file__).resolve().parents[3] / "docs" / "img" / "dashboard.png"
LEARNERS = 6  # the as.csv users with the most answers
HELD_BACK = 8  # answers of the first learner replayed while the page is open
SKILL_NAMES = {"Box and Whisker": "Box-and-whisker plots", "Table": "Reading tables"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed: run `make setup-browser`"
)


def csp_violations(console_text: str) -> list[str]:
    """A console message of Chromium refusing something under the page's CSP, if it is one."""
    return [console_text] if "Content Security Policy" in console_text else []


class ServerThread:
    """uvicorn serving the app on a free loopback port from a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.port = services.free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-under-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = 200
        while not self.server.started and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        assert self.server.started, "uvicorn did not start within 10 s"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api_server(api_settings: Settings, db_pool: asyncpg.Pool) -> Iterator[ServerThread]:
    with ServerThread(api_settings) as server:
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def _busiest_learners(attempts: list[ReplayAttempt]) -> list[str]:
    counts = Counter(a.user_id for a in attempts)
    return [user for user, _ in counts.most_common(LEARNERS)]


async def sign_in_on_page(page: Page, base_url: str, email: str, view: str) -> None:
    await page.goto(f"{base_url}/dashboard?poll=1000&view={view}")
    await page.fill("input[name=tenant_id]", "acme")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")


async def chart_data(page: Page, selector: str) -> dict[str, Any]:
    data: dict[str, Any] = await page.evaluate(
        """(selector) => {
            const chart = Chart.getChart(document.querySelector(selector));
            return {labels: chart.data.labels,
                    datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data}))};
        }""",
        selector,
    )
    return data


async def painted_pixels(page: Page, selector: str) -> int:
    """Non-transparent pixels of a canvas: proof the chart was drawn, not just configured."""
    count: int = await page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const context = canvas.getContext("2d");
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
            return painted;
        }""",
        selector,
    )
    return count


async def test_dashboard_page_draws_real_data_and_updates_live(
    api_server: ServerThread,
    browser: Browser,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
    shared_data: Path,
    tmp_path: Path,
) -> None:
    replay = assistments_as_csv(shared_data / DATASET / "as.csv")
    chosen = _busiest_learners(replay)
    attempts = [a for a in replay if a.user_id in chosen]
    star = chosen[0]
    star_attempts = [a for a in attempts if a.user_id == star]
    held_back = star_attempts[-HELD_BACK:]
    first_pass = [a for a in attempts if a not in held_back]
    for skill_id, name in SKILL_NAMES.items():
        await ensure_skill(db_pool, tenant_id="acme", skill_id=skill_id, name=name)
    await replay_into_views(db_pool, api_settings, first_pass, tenant_id="acme", dataset=DATASET)

    # Accounts whose learner ids are the app's (as.csv) ids, in one class with a teacher.
    now = datetime.now(UTC)
    accounts = {}
    for app_id in chosen:
        user = await make_user(
            db_pool,
            api_settings,
            tenant_id="acme",
            roles={Role.LEARNER},
            email_address=f"student{app_id}@example.org",
        )
        await db_pool.execute(
            "UPDATE users SET display_name = $2 WHERE id = $1", user.id, f"Student {app_id}"
        )
        await learner_ids.set_learner_id(
            db_pool, tenant_id="acme", user_id=user.id, learner_id=app_id, admin_id=user.id
        )
        accounts[app_id] = user
    teacher = await make_user(
        db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}, email_address="t@example.org"
    )
    class_id = "5b0c6d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"
    await db_pool.execute(
        "INSERT INTO classes (tenant_id, class_id, name, created_by, created_at) "
        "VALUES ('acme', $1, 'Grade 8 maths', $2, $3)",
        class_id,
        teacher.id,
        now,
    )
    await db_pool.executemany(
        "INSERT INTO class_members (tenant_id, class_id, user_id, member_role) "
        "VALUES ('acme', $1, $2, $3)",
        [(class_id, teacher.id, "teacher")]
        + [(class_id, user.id, "learner") for user in accounts.values()],
    )

    # --- the learner's page ------------------------------------------------------------------
    context = await browser.new_context(viewport={"width": 1440, "height": 1100})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.extend(csp_violations(msg.text)))
    await sign_in_on_page(page, api_server.url, f"student{star}@example.org", "learner")
    await page.wait_for_function("() => window.learnstream.state.learner !== null")
    mastery_canvas = '#learner-root canvas[data-chart="mastery"]'
    trend_canvas = '#learner-root canvas[data-chart="trend"]'
    await page.wait_for_function(
        "(s) => !!Chart.getChart(document.querySelector(s))", arg=mastery_canvas
    )

    fetched = await page.evaluate("() => window.learnstream.state.learner")
    rows = await db_pool.fetch(
        "SELECT * FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = $1 ORDER BY skill_id",
        star,
    )
    assert rows, "the replay wrote no mastery for the learner"
    assert fetched["learner_id"] == star
    assert [
        (s["skill_id"], s["p_mastery"], s["attempts"], s["label"]) for s in fetched["mastery"]
    ] == [
        (
            r["skill_id"],
            r["p_mastery"],
            r["attempts"],
            mastery_label(r["p_mastery"], r["attempts"]).value,
        )
        for r in rows
    ]
    drawn = await chart_data(page, mastery_canvas)
    assert drawn["labels"] == [SKILL_NAMES[r["skill_id"]] for r in rows]
    assert drawn["datasets"][0]["data"] == [r["p_mastery"] for r in rows]
    per_day = {
        r["day"].isoformat(): (r["answers"], r["correct"])
        for r in await db_pool.fetch(
            """
            SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS answers,
                   count(*) FILTER (WHERE correct) AS correct
            FROM attempts WHERE tenant_id = 'acme' AND user_id = $1 GROUP BY 1
            """,
            star,
        )
    }
    trend = await chart_data(page, trend_canvas)
    answers_drawn = dict(zip(trend["labels"], trend["datasets"][0]["data"], strict=True))
    assert {day: n for day, n in answers_drawn.items() if n} == {
        d: a for d, (a, _) in per_day.items()
    }
    accuracy_drawn = dict(zip(trend["labels"], trend["datasets"][1]["data"], strict=True))
    for day, (answers, correct) in per_day.items():
        assert accuracy_drawn[day] == pytest.approx(correct / answers)
    for canvas in (mastery_canvas, trend_canvas):
        assert await painted_pixels(page, canvas) > 2000, canvas
    await page.screenshot(path=str(tmp_path / "learner.png"), full_page=True)

    # New answers arrive (the processors apply them): the open page follows by itself.
    await replay_into_views(db_pool, api_settings, held_back, tenant_id="acme", dataset=DATASET)
    total = await db_pool.fetchval(
        "SELECT sum(attempts) FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = $1", star
    )
    await page.wait_for_function(
        """(total) => window.learnstream.state.learner.mastery
              .reduce((n, s) => n + s.attempts, 0) === total""",
        arg=int(total),
        timeout=15_000,
    )
    updated = await db_pool.fetch(
        "SELECT p_mastery FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = $1 "
        "ORDER BY skill_id",
        star,
    )
    await page.wait_for_function(
        """([selector, expected]) => JSON.stringify(
              Chart.getChart(document.querySelector(selector)).data.datasets[0].data
           ) === JSON.stringify(expected)""",
        arg=[mastery_canvas, [r["p_mastery"] for r in updated]],
        timeout=15_000,
    )
    await context.close()

    # --- the teacher's page ------------------------------------------------------------------
    context = await browser.new_context(viewport={"width": 1440, "height": 1100})
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.extend(csp_violations(msg.text)))
    await sign_in_on_page(page, api_server.url, "t@example.org", "teacher")
    await page.wait_for_function("() => window.learnstream.state.classOverview !== null")
    # Recommendation outcomes (none recorded here): the panel says so instead of failing.
    await page.wait_for_function("() => window.learnstream.state.recAnalytics !== null")
    assert "no recommendation outcomes yet" in (await page.inner_text("#rec-analytics"))
    assert await page.is_hidden("#experiments")  # a teacher reads no experiments
    await page.wait_for_selector("#heatmap tbody tr")
    overview = await page.evaluate("() => window.learnstream.state.classOverview")
    assert overview["learners"] == LEARNERS
    cells = await page.eval_on_selector_all(
        "#heatmap tbody tr", "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
    )
    assert len(cells) == LEARNERS
    mastery = {
        (r["user_id"], r["skill_id"]): r["p_mastery"]
        for r in await db_pool.fetch(
            "SELECT user_id, skill_id, p_mastery FROM skill_mastery WHERE tenant_id = 'acme'"
        )
    }
    skill_ids = [s["skill_id"] for s in overview["skills"]]
    for row, shown in zip(overview["heatmap"], cells, strict=True):
        assert shown[0] == row["display_name"]
        expected = [mastery.get((row["learner_id"], skill)) for skill in skill_ids]
        assert row["p_mastery"] == expected
        assert shown[1:-1] == ["" if p is None else f"{round(p * 100)}%" for p in expected]
    labels_chart = await chart_data(page, "#class-skills-chart")
    assert labels_chart["labels"] == [SKILL_NAMES[s] for s in skill_ids]
    for dataset in labels_chart["datasets"]:
        assert dataset["data"] == [
            s["label_counts"].get(dataset["label"], 0) for s in overview["skills"]
        ]
    assert await painted_pixels(page, "#class-skills-chart") > 2000

    await page.click("#heatmap tbody tr:first-child a")
    await page.wait_for_function("() => window.learnstream.state.drilldown !== null")
    drill_canvas = '#drilldown-root canvas[data-chart="mastery"]'
    await page.wait_for_function(
        "(s) => !!Chart.getChart(document.querySelector(s))", arg=drill_canvas
    )
    first_learner = overview["heatmap"][0]["learner_id"]
    drilled = await page.evaluate("() => window.learnstream.state.drilldown")
    assert drilled["learner_id"] == first_learner
    await page.screenshot(path=str(tmp_path / "teacher.png"), full_page=True)
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.screenshot(path=str(tmp_path / "overview.png"))  # what the README shows
    await context.close()
    assert errors == []

    if not README_IMAGE.exists():
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "overview.png", README_IMAGE)


async def test_page_and_assets_are_served(api_server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/static/vendor/chart.umd.min.js" in page.text
        script = await client.get("/static/vendor/chart.umd.min.js")
        assert script.status_code == 200
        assert "Chart.js v4.6.1" in script.text[:200]
        assert (await client.get("/static/nope.js")).status_code == 404


async def test_placement_and_operator_views_work_in_the_browser(
    api_server: ServerThread,
    browser: Browser,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
    topics: Settings,
    tmp_path: Path,
) -> None:
    # A small calibrated bank, a learner who takes the test by clicking the choices.
    await ensure_skill(db_pool, tenant_id="acme", skill_id="fractions", name="Fractions")
    for k in range(6):
        await publish_question(
            db_pool,
            tenant_id="acme",
            item_id=f"q{k}",
            skill_id="fractions",
            prompt=f"Question {k}",
            choices=["right", "wrong"],
            answer_key=["right"],
        )
        await calibrate(db_pool, tenant_id="acme", item_id=f"q{k}", a=1.0, b=-1.5 + 0.6 * k)
    learner = await make_user(
        db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}, email_address="l@example.org"
    )
    context = await browser.new_context(viewport={"width": 1440, "height": 1100})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.extend(csp_violations(msg.text)))
    await sign_in_on_page(page, api_server.url, "l@example.org", "learner")
    await page.click("text=Take the placement test")
    part = page.locator('[data-part="placement"]')
    clicks = 0
    while "logits" not in await part.inner_text():
        assert clicks < 6, "the test should end within the bank"
        await part.locator(".choices button", has_text="right").click()
        clicks += 1
        await page.wait_for_function(
            """(n) => {
                const text = document.querySelector('[data-part="placement"]').innerText;
                return text.includes("logits") || text.includes(`Question ${n + 1} of`);
            }""",
            arg=clicks,
        )
    stored = await db_pool.fetchrow(
        "SELECT * FROM placement_results WHERE user_id = $1", uuid.UUID(learner.id)
    )
    assert stored is not None
    assert stored["items_administered"] == clicks
    assert stored["correct"] == clicks
    shown = await page.locator('[data-part="placement"]').inner_text()
    assert f"from {clicks} questions ({clicks} right)" in shown
    await page.screenshot(path=str(tmp_path / "placement.png"), full_page=True)
    await context.close()

    # An operator signs in with a TOTP code and dismisses a fraud alert.
    operator = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.OPERATOR},
        email_address="o@example.org",
    )
    now = datetime.now(UTC)
    secret = await enrol_mfa(db_pool, api_settings, user_id=operator.id, tenant_id="acme", now=now)
    await db_pool.execute(
        """
        INSERT INTO fraud_signals (tenant_id, subject_kind, subject_id, user_id, occurred_at,
            score, reasons, flagged, last_cause_id)
        VALUES ('acme', 'attempt', 'e-1', 'stu-7', $1, 0.93,
                '[{"signal": "rapid_response", "weight": 0.9, "detail": "answered in 0.7 s"}]',
                true, 'c')
        """,
        now,
    )
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.extend(csp_violations(msg.text)))
    await sign_in_on_page(page, api_server.url, "o@example.org", "operator")
    await page.wait_for_selector("#mfa-field:not([hidden])")
    code = mfa.code_at(secret, datetime.now(UTC) + timedelta(seconds=30))
    await page.fill("input[name=code]", code)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#fraud-alerts >> text=answered in 0.7 s")
    await page.wait_for_selector("#pipeline tbody tr")
    await page.screenshot(path=str(tmp_path / "operator.png"), full_page=True)
    await page.click("#fraud-alerts >> text=Dismiss")
    await page.wait_for_selector("#fraud-alerts >> text=no alerts to review")
    decision = await db_pool.fetchval(
        "SELECT decision FROM fraud_reviews WHERE tenant_id = 'acme' AND subject_id = 'e-1'"
    )
    assert decision == "dismissed"
    await context.close()
    assert errors == []

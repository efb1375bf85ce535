"""``python -m infra.screenshots``: the demo's dashboard as each person sees it, as PNGs.

Run after ``make demo`` while its services are up. Signs in on the page with headless
Chromium (Debian's ``chromium``, ``make setup-browser``) as the demo teacher, the first
demo learner and the operator, exactly as a person would (the operator with a TOTP code
from the printed secret), and writes full-page screenshots to
``<data_dir>/screenshots/``. It is how the page is looked at before a release: clipped
cards, repeated lines or messages that contradict their numbers show up here.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Page, ViewportSize, async_playwright

from api.services import mfa
from infra import demo, demo_accounts, replay
from learnstream.settings import Settings, get_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


async def sign_in(page: Page, url: str, tenant_id: str, person: demo_accounts.DemoSignIn) -> None:
    """Fill the sign-in form as ``person``; a TOTP code when the page asks for one."""
    await page.goto(f"{url}/dashboard")
    await page.fill("input[name=tenant_id]", tenant_id)
    await page.fill("input[name=email]", person.email)
    await page.fill("input[name=password]", person.password)
    await page.click("#login-form button[type=submit]")
    if person.totp_secret:
        await page.wait_for_selector("#mfa-field:not([hidden])")
        code = mfa.code_at(person.totp_secret, datetime.now(UTC) + timedelta(seconds=5))
        await page.fill("input[name=code]", code)
        await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#login-view", state="hidden")


async def take(settings: Settings, out_dir: Path) -> list[Path]:
    """One full-page PNG per demo person (and the drill-down for the teacher)."""
    _, attempts = replay.load_replay(
        settings.dataset_dir, settings.demo_dataset, max_learners=settings.demo_max_learners
    )
    learners = list(replay.iter_learners(attempts))
    people = await demo.create_people(settings, learners)  # idempotent: reads them back
    url = f"http://127.0.0.1:{settings.api_port}"
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    written: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            for person in people:
                context = await browser.new_context(viewport=VIEWPORT)
                page = await context.new_page()
                await sign_in(page, url, settings.demo_tenant, person)
                await page.wait_for_load_state("networkidle")
                if person.role == "operator":  # offsets are read from the broker: seconds
                    await page.wait_for_selector("#pipeline thead", timeout=60_000)
                await page.wait_for_timeout(1500)  # charts animate in
                name = person.role if person.role != "learner" else f"learner-{person.learner_id}"
                path = out_dir / f"{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                written.append(path)
                await context.close()
        finally:
            await browser.close()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.screenshots", description=__doc__)
    parser.parse_args(argv)
    settings = get_settings()
    if not CHROMIUM.exists():
        raise SystemExit("Debian chromium is not installed: run `make setup-browser` first")
    for path in asyncio.run(take(settings, settings.data_dir / "screenshots")):
        print(path)


if __name__ == "__main__":
    main()

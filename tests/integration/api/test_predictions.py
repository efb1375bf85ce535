"""GET /v1/learners/{id}/predictions[/{skill}?explain=true] over HTTP, real PostgreSQL.

The predictions processor's own code writes skill_predictions and
prediction_learner_state (batches applied in process, as the batch runner applies
them, from real ASSISTments attempts); the champion is a tiny DKT trained here and
registered in a temporary MLflow store, or nothing (the BKT fallback).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx

from api.app import create_app
from api.services import accounts
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.settings import Settings
from ml.registry import CHAMPION
from processors.predictions import PredictionsProcessor
from tests.integration.processors.support import DATASET, TENANT, AttemptSpec, read_attempts
from tests.integration.processors.test_predictions_state import decoded
from tests.integration.processors.test_predictions_worker import (
    register_model,
    set_alias,
    train_tiny_model,
)


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def apply_attempts(
    settings: Settings, pool: asyncpg.Pool, specs: Sequence[AttemptSpec]
) -> None:
    """Serve ``specs`` through the predictions processor, 50 attempts per transaction."""
    processor = PredictionsProcessor(settings, name="predictions-api-test")
    events = decoded(list(specs))
    for start in range(0, len(events), 50):
        async with pool.acquire() as conn, conn.transaction():
            await processor.apply(conn, events[start : start + 50])


async def app_keys(pool: asyncpg.Pool) -> dict[str, dict[str, str]]:
    """API-key headers of the learners' tenant and of another one."""
    headers = {}
    for tenant in (TENANT, "globex"):
        await accounts.create_tenant(pool, tenant_id=tenant, name=tenant)
        key = await apikeys.create_api_key(
            pool, tenant_id=tenant, app_name="app", scopes={Scope.VIEWS_READ}
        )
        headers[tenant] = {"X-API-Key": key.plaintext}
    return headers


def assert_names_own_attempts(
    explanation: list[dict[str, object]], history: Sequence[AttemptSpec]
) -> None:
    """Every attempt listed is the learner's own ``answers_ago`` back, largest weight first."""
    weights = [abs(float(str(e["weight"]))) for e in explanation]
    assert weights == sorted(weights, reverse=True)
    for e in explanation:
        answered = history[len(history) - 1 - int(str(e["answers_ago"]))]
        assert (e["skill_id"], e["correct"]) == (answered.skill_ids[0], answered.correct), e


async def test_champion_predictions_are_explained_by_the_learners_own_attempts(
    settings: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"data_dir": tmp_path / "store", "predictions_registry_poll_s": 0.01}
    )
    specs = read_attempts(shared_data / DATASET, students=6, limit=240)
    model_1, vocabulary = train_tiny_model(specs, seed=1)
    version_1 = register_model(settings, model_1, vocabulary, tmp_path / "m1")
    set_alias(settings, CHAMPION, version_1)
    await apply_attempts(settings, db_pool, specs)
    headers = await app_keys(db_pool)
    last = specs[-1]
    user, skill = last.user_id, last.skill_ids[0]
    history = [s for s in specs if s.user_id == user]
    label_1 = f"{settings.ml_model_name}@{version_1}"

    async with api(settings) as client:
        listed = await client.get(f"/v1/learners/{user}/predictions", headers=headers[TENANT])
        assert listed.status_code == 200, listed.text
        stored = await db_pool.fetch(
            "SELECT skill_id, p_correct, model_version FROM skill_predictions "
            "WHERE tenant_id = $1 AND user_id = $2 ORDER BY skill_id",
            TENANT,
            user,
        )
        assert stored
        assert [
            (s["skill_id"], s["p_correct"], s["model_version"]) for s in listed.json()["skills"]
        ] == [(r["skill_id"], r["p_correct"], r["model_version"]) for r in stored]
        assert {r["model_version"] for r in stored} == {label_1}

        explained = await client.get(
            f"/v1/learners/{user}/predictions/{skill}?explain=true&top_k=3",
            headers=headers[TENANT],
        )
        assert explained.status_code == 200, explained.text
        body = explained.json()
        assert body["skill_id"] == skill
        assert body["explained_by"] == label_1
        assert body["p_correct"] == next(r["p_correct"] for r in stored if r["skill_id"] == skill)
        assert 0 < len(body["explanation"]) <= 3
        assert_names_own_attempts(body["explanation"], history)

        plain = await client.get(
            f"/v1/learners/{user}/predictions/{skill}", headers=headers[TENANT]
        )
        assert plain.status_code == 200
        assert plain.json()["explanation"] is None

        # A new champion is picked up by the running API without a restart.
        model_2, _ = train_tiny_model(specs, seed=2, steps=30)
        version_2 = register_model(settings, model_2, vocabulary, tmp_path / "m2")
        set_alias(settings, CHAMPION, version_2)
        await asyncio.sleep(0.05)  # past the (0.01 s) registry poll interval
        reloaded = await client.get(
            f"/v1/learners/{user}/predictions/{skill}?explain=true", headers=headers[TENANT]
        )
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["explained_by"] == f"{settings.ml_model_name}@{version_2}"
        assert_names_own_attempts(reloaded.json()["explanation"], history)

        # Unknown learner, unknown skill, another tenant: 404 problems naming what is missing.
        for path, named in (
            ("/v1/learners/nobody/predictions", "nobody"),
            ("/v1/learners/nobody/predictions/x?explain=true", "nobody"),
            (f"/v1/learners/{user}/predictions/no-such-skill?explain=true", "no-such-skill"),
        ):
            missing = await client.get(path, headers=headers[TENANT])
            assert missing.status_code == 404, missing.text
            assert missing.headers["content-type"] == "application/problem+json"
            assert named in missing.json()["detail"]
        foreign = await client.get(f"/v1/learners/{user}/predictions", headers=headers["globex"])
        assert foreign.status_code == 404, foreign.text


async def test_without_a_model_bkt_predictions_are_served_without_attributions(
    settings: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"data_dir": tmp_path / "empty-store"})
    specs = read_attempts(shared_data / DATASET, students=4, limit=80)
    await apply_attempts(settings, db_pool, specs)
    headers = await app_keys(db_pool)
    last = specs[-1]
    async with api(settings) as client:
        listed = await client.get(
            f"/v1/learners/{last.user_id}/predictions", headers=headers[TENANT]
        )
        assert listed.status_code == 200, listed.text
        skills = listed.json()["skills"]
        answered = {s.skill_ids[0] for s in specs if s.user_id == last.user_id}
        assert {s["skill_id"] for s in skills} == answered
        assert {s["model_version"] for s in skills} == {"bkt"}
        explained = await client.get(
            f"/v1/learners/{last.user_id}/predictions/{last.skill_ids[0]}?explain=true",
            headers=headers[TENANT],
        )
        assert explained.status_code == 200, explained.text
        assert explained.json()["explained_by"] == "bkt"
        assert explained.json()["explanation"] == []  # BKT: one number per skill

        # Predictions without stored state (e.g. state rows lost): 404 naming both.
        await db_pool.execute("DELETE FROM prediction_learner_state")
        stateless = await client.get(
            f"/v1/learners/{last.user_id}/predictions/{last.skill_ids[0]}?explain=true",
            headers=headers[TENANT],
        )
        assert stateless.status_code == 404, stateless.text
        detail = stateless.json()["detail"]
        assert last.user_id in detail
        assert last.skill_ids[0] in detail

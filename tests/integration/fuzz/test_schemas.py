"""schemathesis against the OpenAPI documents of the running ingest and read API.

Each service runs as its deployed process (``python -m ingest``, ``python -m api``) on
the test database, Redis and broker. Every documented operation gets a fixed number
of derandomized requests, valid per the schema and deliberately invalid, with a real
credential (an ingest API key; a signed-in teacher/author/reviewer for the API, signed
in again before each operation because fuzzed calls may log it out). Proves: no
answer is a 5xx, and every 4xx is problem+json with type, title, status and detail,
naming the fields for 400/413/415/422. Time is bounded by the example counts below
(about 1,000 requests in all).
"""

from __future__ import annotations

import httpx

from tests.integration.fuzz.conftest import RunningService
from tests.integration.fuzz.support import FuzzReport, fuzz_service

# POST /v1/events is the whole ingest surface: it gets the most examples.
INGEST_EXAMPLES = {"POST /v1/events": 80}
API_EXAMPLES_PER_MODE = 4


def assert_clean(report: FuzzReport, *, min_calls: int) -> None:
    assert report.calls >= min_calls, f"only {report.calls} calls made; statuses {report.statuses}"
    assert not report.failures, (
        f"{len(report.failures)} of {report.calls} answers broke the contract "
        f"(statuses seen: {report.statuses}):\n" + "\n".join(report.failures[:15])
    )


def test_ingest_schema_fuzz_never_5xx_and_every_4xx_is_a_named_problem(
    ingest_service: RunningService, ingest_key: str
) -> None:
    document = httpx.get(f"{ingest_service.base_url}/openapi.json", timeout=10).json()
    report = fuzz_service(
        document,
        ingest_service.base_url,
        headers_for=lambda _: {"Authorization": f"Bearer {ingest_key}"},
        examples=INGEST_EXAMPLES,
        default_examples=5,
    )
    assert_clean(report, min_calls=100)
    # Both sides of the contract were exercised: something was accepted, something refused.
    assert any(s.startswith("2") for s in report.statuses), report.statuses
    assert any(s.startswith("4") for s in report.statuses), report.statuses


def test_read_api_schema_fuzz_never_5xx_and_every_4xx_is_a_named_problem(
    api_service: RunningService, api_user: dict[str, str]
) -> None:
    base = api_service.base_url
    document = httpx.get(f"{base}/openapi.json", timeout=10).json()

    def signed_in(_: str) -> dict[str, str]:
        answer = httpx.post(f"{base}/v1/auth/login", json=api_user, timeout=10)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    report = fuzz_service(
        document,
        base,
        headers_for=signed_in,
        examples={},
        default_examples=API_EXAMPLES_PER_MODE,
    )
    operations = sum(len(methods) for methods in document["paths"].values())
    assert_clean(report, min_calls=operations * 2)
    assert any(s.startswith("2") for s in report.statuses), report.statuses

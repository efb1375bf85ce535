"""schemathesis against the OpenAPI documents of the running ingest and read API.

Each service runs as its deployed process (``python -m ingest``, ``python -m api``) on
the test database, Redis and broker. Every documented operation gets a fixed number
of derandomized requests, valid per the schema and deliberately invalid, with a real
credential (an ingest API key; a signed-in teacher/author/reviewer for the API, signed
in again before each operation because fuzzed calls may log it out). Proves: no
answer is a 5xx, and every 4xx is problem+json with type, title, status and detail,
naming the fields for 400/413/415/422. Time is bounded by the example counts below
(about 1,000 requests in all).

The read API is fuzzed again with the strongest principals, with every schemathesis
check on (``--checks all``): an admin signed in with MFA (holding every staff role),
and a client-app API key. The assertion there is zero 5xx (and the problem+json
contract); what the other checks report is printed, counted by check.
"""

from __future__ import annotations

import httpx

from tests.integration.fuzz.conftest import AdminSession, RunningService
from tests.integration.fuzz.support import FuzzReport, fuzz_service

# POST /v1/events is the whole ingest surface: it gets the most examples.
INGEST_EXAMPLES = {"POST /v1/events": 80}
API_EXAMPLES_PER_MODE = 4
# The authenticated runs with every schemathesis check: fewer examples (the checks
# re-send some requests) and a time bound, so the suite's time stays fixed.
CHECKED_EXAMPLES_PER_MODE = 3
CHECKED_TIME_BUDGET_S = 300.0


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


def assert_no_server_error(report: FuzzReport, *, min_calls: int) -> None:
    print(f"fuzz: {report.calls} calls, statuses {report.statuses}")  # noqa: T201
    print(f"schemathesis checks' findings (information): {report.check_findings}")  # noqa: T201
    assert not report.out_of_time, f"the time bound skipped {report.out_of_time}"
    assert not report.server_errors, (
        f"{len(report.server_errors)} x 5xx in {report.calls} calls:\n"
        + "\n".join(report.server_errors[:15])
    )
    assert_clean(report, min_calls=min_calls)


def test_read_api_fuzz_as_mfa_admin_with_all_checks_gives_no_5xx(
    api_service: RunningService, api_admin: AdminSession
) -> None:
    base = api_service.base_url
    document = httpx.get(f"{base}/openapi.json", timeout=10).json()
    report = fuzz_service(
        document,
        base,
        headers_for=api_admin.headers,
        examples={},
        default_examples=CHECKED_EXAMPLES_PER_MODE,
        all_checks=True,
        time_budget_s=CHECKED_TIME_BUDGET_S,
    )
    operations = sum(len(methods) for methods in document["paths"].values())
    assert_no_server_error(report, min_calls=operations * 2)
    assert any(s.startswith("2") for s in report.statuses), report.statuses


def test_read_api_fuzz_with_api_key_with_all_checks_gives_no_5xx(
    api_service: RunningService, api_client_key: str
) -> None:
    base = api_service.base_url
    document = httpx.get(f"{base}/openapi.json", timeout=10).json()
    report = fuzz_service(
        document,
        base,
        headers_for=lambda _: {"Authorization": f"Bearer {api_client_key}"},
        examples={},
        default_examples=CHECKED_EXAMPLES_PER_MODE,
        all_checks=True,
        time_budget_s=CHECKED_TIME_BUDGET_S,
    )
    operations = sum(len(methods) for methods in document["paths"].values())
    assert_no_server_error(report, min_calls=operations * 2)
    assert any(s.startswith("2") for s in report.statuses), report.statuses

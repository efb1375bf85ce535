"""Running schemathesis over every operation of a live service, with our own checks.

Every operation of the service's OpenAPI document gets a fixed number of generated
requests in two modes: positive (valid per the schema) and negative (schemathesis
breaks the schema on purpose). Generation is derandomized (the same requests every
run) and bounded (a fixed number of examples per operation and a total time bound),
so the suite's time stays fixed. Each answer is checked with :func:`answer_problem`:
no 5xx, and every 4xx is RFC 9457 problem+json that names the problem. With
``all_checks`` every schemathesis check also runs on each answer (the CLI's
``--checks all``); what they find is counted by check in the report, while the
assertion stays zero 5xx (the document does not list every 4xx, so a conformance
check's complaint is information, a 5xx is a defect). Failures are collected and
reported together, with the request as curl.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

# Statuses whose answer must list the offending fields in ``errors``.
FIELD_STATUSES = {400, 413, 415, 422}
# Seconds one call may take. Generous: the first explained prediction imports torch and
# MLflow in the API process, which takes over 20 s on a busy 2-core machine.
CALL_TIMEOUT_S = 60


def answer_problem(status: int, headers: Mapping[str, Any], body: bytes) -> str | None:
    """What is wrong with an answer, or None: a 5xx, or a 4xx that is not a named problem."""
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    content_type = _header(headers, "content-type")
    if not content_type.startswith("application/problem+json"):
        return f"{status} answered as {content_type!r}, not application/problem+json"
    try:
        problem = json.loads(body)
    except ValueError:
        return f"{status} body is not JSON: {body[:200]!r}"
    if not isinstance(problem, dict):
        return f"{status} problem is not an object: {problem!r}"
    for member in ("type", "title", "detail"):
        if not isinstance(problem.get(member), str) or not problem[member].strip():
            return f"{status} problem without a {member}: {problem}"
    if problem.get("status") != status:
        return f"{status} problem says status {problem.get('status')}"
    errors = problem.get("errors")
    if not isinstance(errors, list):
        return f"{status} problem without an errors list: {problem}"
    if status in FIELD_STATUSES and not errors:
        return f"{status} problem names no field: {problem}"
    for error in errors:
        if not (isinstance(error, dict) and error.get("field") is not None and error.get("reason")):
            return f"{status} problem has an error without field and reason: {error}"
    return None


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return ""


@dataclass
class FuzzReport:
    """What a fuzz run did."""

    calls: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "401 negative": count
    failures: list[str] = field(default_factory=list)
    not_generated: list[str] = field(default_factory=list)  # (operation, mode) with no case
    server_errors: list[str] = field(default_factory=list)  # every 5xx, with its curl
    check_findings: dict[str, int] = field(default_factory=dict)  # schemathesis check: count
    out_of_time: list[str] = field(default_factory=list)  # operations the time bound skipped


def fuzz_service(
    schema_document: dict[str, Any],
    base_url: str,
    *,
    headers_for: Callable[[str], dict[str, str]],
    examples: Mapping[str, int],
    default_examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    all_checks: bool = False,
    time_budget_s: float | None = None,
) -> FuzzReport:
    """Call every operation ``examples.get("METHOD /path", default)`` times per mode.

    ``headers_for("METHOD /path")`` gives the headers of each call (authentication).
    ``all_checks`` runs every schemathesis check on each answer; ``time_budget_s``
    stops starting new operations once spent (those left are in ``out_of_time``).
    """
    report = FuzzReport()
    schema = schemathesis.openapi.from_dict(schema_document)
    if all_checks:
        schema.config.checks.update(included_check_names=["all"])
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise AssertionError(
                f"the schema has an operation schemathesis cannot use: {result.err()}"
            )
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if deadline is not None and time.monotonic() > deadline:
            report.out_of_time.append(label)
            continue
        count = examples.get(label, default_examples)
        for mode in modes:
            run = _runner(
                operation.as_strategy(generation_mode=mode),
                f"{label} [{mode.value}]",
                base_url,
                headers_for(label),
                count,
                report,
                positive=mode is GenerationMode.POSITIVE,
                all_checks=all_checks,
            )
            try:
                run()
            except Unsatisfiable:
                report.not_generated.append(f"{label} [{mode.value}]")
    return report


def _runner(
    strategy: Any,
    label: str,
    base_url: str,
    headers: dict[str, str],
    count: int,
    report: FuzzReport,
    *,
    positive: bool,
    all_checks: bool = False,
) -> Callable[[], None]:
    """A hypothesis test calling the service with ``count`` cases from ``strategy``."""

    @hypothesis.settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def call(case: schemathesis.Case[Any]) -> None:
        if positive and case.headers:
            # Valid requests carry only our credential, not generated API-key headers
            # (which the services check first and would refuse as 401).
            case.headers.pop("X-API-Key", None)
        response = case.call(base_url=base_url, headers=headers, timeout=CALL_TIMEOUT_S)
        report.calls += 1
        key = f"{response.status_code} {'positive' if positive else 'negative'}"
        report.statuses[key] = report.statuses.get(key, 0) + 1
        problem = answer_problem(response.status_code, response.headers, response.content)
        if problem is not None:
            report.failures.append(f"{label}: {problem}\n  {case.as_curl_command()}")
        if response.status_code >= 500:
            report.server_errors.append(
                f"{label}: {response.status_code}\n  {case.as_curl_command()}"
            )
        if all_checks:
            _run_all_checks(case, response, base_url, headers, report)

    runner: Callable[[], None] = call
    return runner


def _run_all_checks(
    case: schemathesis.Case[Any],
    response: Any,
    base_url: str,
    headers: dict[str, str],
    report: FuzzReport,
) -> None:
    """Every enabled schemathesis check on ``response``; findings counted by check.

    Checks that send requests of their own (an unauthenticated copy, for one) reach
    ``base_url`` with ``headers``; a 5xx there fails that check and is counted too.
    """
    try:
        case.validate_response(
            response,
            headers=headers,
            transport_kwargs={"base_url": base_url, "timeout": CALL_TIMEOUT_S},
        )
    except (AssertionError, FailureGroup) as failed:
        for failure in getattr(failed, "exceptions", [failed]):
            name = getattr(failure, "title", type(failure).__name__)
            report.check_findings[name] = report.check_findings.get(name, 0) + 1

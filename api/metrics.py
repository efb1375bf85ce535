"""Prometheus metrics of the API process, exposed at ``/metrics``.

Counters live at module level (the prometheus_client convention): one process,
one registry, however many apps a test suite creates.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "learnstream_api_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "learnstream_api_http_request_duration_seconds",
    "Time to answer an HTTP request, in seconds, by route template.",
    ["route"],
)
SECURITY_EVENTS = Counter(
    "learnstream_api_security_events_total",
    "Security events written to the audit log (failed logins, lockouts, denied access, "
    "MFA changes, key creation ...), by action and outcome.",
    ["action", "outcome"],
)

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
# Rejected API keys beyond the audit log's per-window allowance: counted here, and as a
# total in the next row of the same source and key (api.services.audit.record_throttled).
AUDIT_ROWS_SUPPRESSED = Counter(
    "learnstream_api_audit_rows_suppressed_total",
    "Security events not written to the audit log as rows of their own, because their "
    "source already had its rows for the window (flooding), by action.",
    ["action"],
)

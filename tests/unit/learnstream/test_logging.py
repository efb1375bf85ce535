"""Secret redaction in log records: URL credential parameters and token shapes go, paths stay."""

from __future__ import annotations

import logging

from learnstream.logging import RedactSecrets, redact_secrets


def test_redacts_credential_parameters_and_tokens_but_keeps_the_rest() -> None:
    line = '1.2.3.4:5 - "GET /unlock?x=1&token=lst_abcdefgh12345&view=learner HTTP/1.1" 404'
    assert redact_secrets(line) == (
        '1.2.3.4:5 - "GET /unlock?x=1&token=[redacted]&view=learner HTTP/1.1" 404'
    )
    assert redact_secrets("/x?mfa_token=eyJ.a.b&code=123456#password=p") == (
        "/x?mfa_token=[redacted]&code=[redacted]#password=[redacted]"
    )
    assert redact_secrets("refresh lsr_0123456789abcdef spent") == "refresh lsr_[redacted] spent"
    assert (
        redact_secrets("/dashboard?poll=1000&view=teacher") == "/dashboard?poll=1000&view=teacher"
    )


def test_filter_redacts_formatted_arguments_of_any_type() -> None:
    class Url:
        def __str__(self) -> str:
            return "http://api/reset?token=lst_secret123456"

    record = logging.LogRecord(
        "httpx", logging.INFO, "", 0, "HTTP Request: %s %s", ("GET", Url()), None
    )
    record.__dict__["path"] = "/reset?token=lst_secret123456"  # as logging's extra= sets it
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "HTTP Request: GET http://api/reset?token=[redacted]"
    assert record.__dict__["path"] == "/reset?token=[redacted]"


def test_filter_keeps_uvicorn_access_arguments_formattable() -> None:
    # uvicorn's access formatter unpacks the arguments (client, method, path, version,
    # status); a filter that folded them into the message broke every access line.
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/verify?token=lst_secret123456", "1.1", 404),
        None,
    )
    assert RedactSecrets().filter(record)
    access = AccessFormatter(
        '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    )
    assert access.format(record) == (
        '127.0.0.1:5000 - "GET /verify?token=[redacted] HTTP/1.1" 404 Not Found'
    )

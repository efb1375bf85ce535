"""One logging set-up: JSON lines carrying topic, partition, offset and event id when known.

Every record passes ``RedactSecrets`` first: a URL in a log line (uvicorn's access log
above all) keeps its path but loses the values of ``token=``, ``password=`` and similar
parameters, and single-use or refresh tokens (``lst_``, ``lsr_``) anywhere in the text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes a LogRecord always has; anything else came in through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


# Values of URL parameters that are credentials (?token=, &access_token=, #password= ...).
_SECRET_PARAM = re.compile(
    r"(?i)([?&#;](?:[a-z_]*token|password|passwd|secret|api_key|apikey|code|otp)=)[^&#\s\"']*"
)
# Account (single-use) and refresh tokens wherever they appear.
_TOKEN_SHAPE = re.compile(r"\b(ls[tr]_)[A-Za-z0-9_-]{8,}")
REDACTED = "[redacted]"
# Loggers that log request URLs and may have handlers of their own (uvicorn's own
# log config gives uvicorn.access a handler that does not propagate to the root).
URL_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_secrets(text: str) -> str:
    """``text`` with credential values in URLs and token-shaped strings replaced."""
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    return _TOKEN_SHAPE.sub(rf"\1{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's formatted message and ``extra`` strings through ``redact_secrets``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            # Formatters may read the arguments themselves (uvicorn's access formatter
            # unpacks them into client, method, path...), so keep the tuple and redact its
            # members; an object whose text holds a secret (httpx logs an httpx.URL)
            # becomes its redacted text.
            record.args = tuple(_redacted_arg(arg) for arg in record.args)
            if isinstance(record.msg, str):
                record.msg = redact_secrets(record.msg)
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True  # a malformed record: logging reports it as it would anyway
            record.msg, record.args = redact_secrets(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact_secrets(value))
        return True


def _redacted_arg(arg: object) -> object:
    if isinstance(arg, (int, float)) or arg is None:
        return arg  # %d and friends still format it
    text = str(arg)
    redacted = redact_secrets(text)
    return arg if redacted == text else redacted


def install_secret_redaction() -> None:
    """Put ``RedactSecrets`` on the URL-logging loggers themselves (idempotent).

    A filter on a logger runs before any of its handlers, whoever configured them.
    """
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line, with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send every logger to stderr, as JSON lines or as plain text for a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # On the handler, so records that propagate from any logger are redacted too.
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_secret_redaction()

"""Serve the API: ``python -m api`` listens on settings.api_host:settings.api_port, and
serves ``/metrics`` on settings.metrics_host:settings.api_metrics_port."""

from __future__ import annotations

import asyncio

from api.app import create_app
from api.mfa_rekey import reseal
from learnstream.asgi import serve
from learnstream.logging import configure_logging
from learnstream.settings import get_settings


def main() -> None:
    """Run uvicorn with the process-wide settings until interrupted."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    # TOTP secrets stored in plain text or under a retired key are re-encrypted under the
    # current one before serving (cheap when there is nothing to do).
    asyncio.run(reseal(settings))
    serve(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        metrics_host=settings.metrics_host,
        metrics_port=settings.api_metrics_port,
        trusted_proxies=settings.trusted_proxies,
    )


if __name__ == "__main__":
    main()

"""``python -m ingest``: serve the ingest API with uvicorn on ``ingest_host:ingest_port``."""

from __future__ import annotations

import uvicorn

from ingest.app import create_app
from learnstream.logging import configure_logging
from learnstream.settings import get_settings


def main() -> None:
    """Run the ingest service until interrupted."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,  # keep the one logging set-up (JSON lines)
    )


if __name__ == "__main__":
    main()

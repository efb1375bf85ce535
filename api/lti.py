"""LTI administration from the command line: ``python -m api.lti register|rotate-key|list``.

``register`` does what ``POST /v1/tenants/me/lti-platforms`` does (for set-up scripts,
before any admin can sign in) and prints the tool URLs to paste into the LMS.
``rotate-key`` makes a new tool signing key; the old one stays in the JWKS for a day
(api/services/lti/keys.py), so platforms that cached it keep verifying.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from api.services.lti import keys, platforms
from api.services.lti.launch import LAUNCH_PATH, LOGIN_PATH
from learnstream import db
from learnstream.settings import Settings, get_settings


async def _register(settings: Settings, args: argparse.Namespace) -> dict[str, str]:
    pool = await db.create_pool(settings)
    try:
        await platforms.register(
            pool,
            platforms.Platform(
                tenant_id=args.tenant,
                platform_id=args.platform_id,
                issuer=args.issuer,
                client_id=args.client_id,
                auth_login_url=args.auth_login_url,
                auth_token_url=args.auth_token_url,
                jwks_url=args.jwks_url,
                deployment_ids=tuple(args.deployment_id),
            ),
        )
    finally:
        await pool.close()
    base = settings.public_base_url.rstrip("/")
    return {
        "tool_login_url": base + LOGIN_PATH,
        "tool_launch_url": base + LAUNCH_PATH,
        "tool_jwks_url": base + "/v1/lti/jwks",
    }


async def _rotate(settings: Settings) -> dict[str, str]:
    pool = await db.create_pool(settings)
    try:
        kid = await keys.rotate(pool, settings, now=datetime.now(UTC))
    finally:
        await pool.close()
    return {"kid": kid}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m api.lti", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="register an LMS platform for a tenant")
    for name in (
        "tenant",
        "platform-id",
        "issuer",
        "client-id",
        "auth-login-url",
        "auth-token-url",
        "jwks-url",
    ):
        register.add_argument(f"--{name}", required=True)
    register.add_argument("--deployment-id", action="append", required=True)
    commands.add_parser("rotate-key", help="make a new tool signing key")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "register":
        out = asyncio.run(_register(settings, args))
    else:
        out = asyncio.run(_rotate(settings))
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

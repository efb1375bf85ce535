"""Re-encrypt stored TOTP secrets under the current key: ``python -m api.mfa_rekey``.

Run after upgrading past migration 0083 (plain secrets become encrypted) and after
putting a new key first in ``LEARNSTREAM_MFA_ENCRYPTION_KEYS`` (secrets under older
keys move to it; then the old key may be dropped). ``python -m api`` runs it at
start, so a restart does the same. Idempotent, and safe beside running API workers.
``--decrypt`` writes the secrets back in plain text, only to downgrade below 0083.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from api.services import mfa
from learnstream import db
from learnstream.settings import Settings, get_settings

_log = logging.getLogger(__name__)


async def reseal(settings: Settings, *, decrypt: bool = False) -> int:
    """Re-encrypt (or, with ``decrypt``, decrypt) every stale TOTP secret; returns the count."""
    conn = await db.connect(settings)
    try:
        changed = await mfa.reseal_all(conn, settings, decrypt=decrypt)
    finally:
        await conn.close()
    if changed:
        _log.info("TOTP secrets %s: %d", "decrypted" if decrypt else "re-encrypted", changed)
    return changed


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m api.mfa_rekey", description=__doc__)
    parser.add_argument("--decrypt", action="store_true", help="store plain text (downgrade)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(reseal(get_settings(), decrypt=args.decrypt))


if __name__ == "__main__":
    main()

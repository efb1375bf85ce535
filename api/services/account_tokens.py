"""Single-use account tokens: mailed or printed, stored only as SHA-256, spent once.

Each token has a purpose (:class:`TokenPurpose`); issuing one expires the earlier
unused tokens of the same purpose, so only the newest mailed link works.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from api.exceptions import InvalidInputError
from api.services import email, tokens
from api.services.transactions import transaction
from learnstream.db import Queryable


class TokenPurpose(StrEnum):
    """What a mailed single-use token may be spent on."""

    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    UNLOCK = "unlock"
    ENROL = "enrol"  # first sign-in of an account an operator made (api/services/enrolment.py)


async def issue_account_token(
    db: Queryable, *, user_id: str, purpose: TokenPurpose, ttl_s: int, now: datetime
) -> str:
    """A new single-use token for ``purpose``, valid ``ttl_s`` seconds; earlier ones expire."""
    plaintext, digest = tokens.new_opaque_token(tokens.ACCOUNT_TOKEN_PREFIX)
    async with transaction(db) as conn:
        # Only the newest mailed token of a purpose works: an old mail found later is dead.
        await conn.execute(
            """
            UPDATE account_tokens SET expires_at = least(expires_at, $3)
            WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
            """,
            user_id,
            purpose.value,
            now,
        )
        await conn.execute(
            """
            INSERT INTO account_tokens (token_sha256, user_id, purpose, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5)
            """,
            digest,
            user_id,
            purpose.value,
            now,
            now + timedelta(seconds=ttl_s),
        )
    return plaintext


async def consume_account_token(
    db: Queryable, *, token: str, purpose: TokenPurpose, now: datetime
) -> str:
    """Mark the token used and return its user id; InvalidInputError if unknown/used/expired.

    One UPDATE both checks and spends, so two concurrent requests cannot both win.
    """
    user_id = await db.fetchval(
        """
        UPDATE account_tokens SET used_at = $3
        WHERE token_sha256 = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
        RETURNING user_id
        """,
        tokens.token_sha256(token),
        purpose.value,
        now,
    )
    if user_id is None:
        raise unspendable(purpose)
    return str(user_id)


async def revoke_all_refresh_tokens(db: Queryable, *, user_id: str, now: datetime) -> None:
    """Revoke every refresh token of the user; pair with ``token_versions.bump`` to end
    their access tokens too."""
    await db.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
        now,
    )


def unspendable(purpose: TokenPurpose) -> InvalidInputError:
    """The 422 answered for a token that is unknown, already used or expired."""
    return InvalidInputError(
        f"{purpose.value} token is unknown, already used or expired",
        field="body.token",
        reason="unknown, used or expired",
    )


async def mail_account_token(
    db: Queryable,
    sender: email.EmailSender,
    *,
    user_id: str,
    purpose: TokenPurpose,
    ttl_s: int,
    now: datetime,
    compose: Callable[[str], email.OutgoingEmail],
) -> None:
    """Issue a ``purpose`` token (``ttl_s`` seconds) and mail ``compose(token)``.

    The token and the outbox row are written in one transaction, so a mail is never
    queued for a token that was not stored (or the reverse); all of it runs off the
    request path, so the answer does not reveal whether the account exists.
    """

    async def issue_and_queue() -> None:
        async with transaction(db) as conn:
            token = await issue_account_token(
                conn, user_id=user_id, purpose=purpose, ttl_s=ttl_s, now=now
            )
            await email.queue(sender, conn, compose(token))
        await email.dispatch(sender)

    await email.off_request_path(sender, issue_and_queue)

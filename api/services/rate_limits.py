"""Request rate limits in Redis: a fixed window (one minute unless told) per API key, user,
client IP or mail recipient.

A fixed window (INCR + EXPIRE on a key named after the window) costs one round
trip and is shared by every API process. Its known weakness, up to twice the
limit across a window edge, is acceptable for abuse protection; it is not a
billing meter.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from api.exceptions import ApiError
from learnstream import problems

WINDOW_S = 60


class TooManyRequestsError(ApiError):
    """The caller used up its window; ``Retry-After`` says when the next one opens."""

    status = problems.RATE_LIMITED.status
    slug = problems.RATE_LIMITED.slug
    title = problems.RATE_LIMITED.title


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one counted request: the count in this window and seconds to the next."""

    allowed: bool
    count: int
    limit: int
    retry_after_s: int


def window_of(now_s: float, window_s: int = WINDOW_S) -> tuple[int, int]:
    """``(window index, whole seconds until it ends, at least 1)`` for Unix time ``now_s``."""
    index = int(now_s // window_s)
    remaining = (index + 1) * window_s - now_s
    return index, max(1, int(remaining + 0.999))


async def hit(
    redis: Redis,
    *,
    namespace: str,
    bucket: str,
    limit: int,
    now_s: float,
    window_s: int = WINDOW_S,
) -> RateDecision:
    """Count one request against ``bucket`` (e.g. ``key:lsk_...``, ``ip:1.2.3.4``).

    ``window_s`` (seconds, >= 1) is the window length; buckets of different lengths
    must use different bucket names.
    """
    index, retry_after = window_of(now_s, window_s)
    key = f"{namespace}:api:rate:{bucket}:{index}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s * 2)
        count, _ = await pipe.execute()
    return RateDecision(int(count) <= limit, int(count), limit, retry_after)


def refuse(decision: RateDecision, *, bucket_kind: str) -> TooManyRequestsError:
    """The 429 for a decision that was not allowed."""
    return TooManyRequestsError(
        f"more than {decision.limit} requests per minute for this {bucket_kind}; "
        f"retry in {decision.retry_after_s} s",
        field="header.Authorization" if bucket_kind != "client address" else "client",
        reason="rate limit exceeded",
        headers={"Retry-After": str(decision.retry_after_s)},
    )

"""The ASGI middleware both HTTP services (ingest, api) share."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# observe(route template, method, status code, seconds from request to end of answer)
RequestObserver = Callable[[str, str, int, float], None]


class ObserveRequests:
    """Calls ``observe(route, method, status, seconds)`` once per HTTP request.

    ``route`` is the matched route's template (``/v1/learners/{user_id}/mastery``), not
    the raw path, so metric labels stay few however many learners there are
    ("unmatched" when no route matched). ``status`` is the status code sent, 500 when
    the app raised before sending one. Plain ASGI on purpose: Starlette's
    ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every request through an extra
    task and memory stream, which py-spy showed in ingest's single-event requests.
    """

    def __init__(self, app: ASGIApp, observe: RequestObserver) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router records the matched route in the (shared) scope.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.observe(route, scope["method"], status, time.perf_counter() - started)

"""The ASGI middleware both HTTP services (ingest, api) share: request metrics, body
limits counted while the body streams in, security headers, and uvicorn's proxy options.
Their refusals are problem+json in the one scheme of learnstream/problems.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.supervisors import Multiprocess

from learnstream import problems
from learnstream.problems import FieldProblem, send_problem

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


class BodyLimits:
    """The most bytes a request body may have, by path: the longest matching prefix of
    ``by_prefix`` wins (``/v1/content/import``, ``/v1/auth/``), else ``default``."""

    def __init__(self, default: int, by_prefix: Mapping[str, int] | None = None) -> None:
        self.default = default
        self._table = sorted((by_prefix or {}).items(), key=lambda kv: -len(kv[0]))

    def for_path(self, path: str) -> int:
        """Bytes allowed for a request to ``path``."""
        for prefix, limit in self._table:
            if path.startswith(prefix):
                return limit
        return self.default


class LimitRequestBody:
    """Refuses request bodies over their route's limit while they arrive, before parsing.

    A declared ``Content-Length`` over the limit is answered 413 without reading a
    byte; otherwise the ``http.request`` chunks are counted as the app reads them and
    the 413 goes out as soon as the count crosses the limit, so the app never holds
    more than the limit plus one chunk (the server's read size, 64 KiB in uvicorn).
    The app then sees the client as gone (``http.disconnect``): its body read fails,
    and whatever it still tries to answer is dropped. ``Connection: close`` ends the
    connection, as the rest of the body is never read.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                await send_problem(
                    send,
                    scope,
                    problems.MALFORMED_REQUEST,
                    detail=f"Content-Length {declared!r} is not a number of bytes",
                    errors=[FieldProblem("header.Content-Length", "not a number")],
                    headers=[(b"connection", b"close")],
                )
                return
            if int(declared) > limit:
                await _refuse_too_large(send, scope, limit, f"Content-Length is {declared}")
                return
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse_too_large(
                            send, scope, limit, f"more than {limit} bytes arrived"
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is out; the app's answer to the "disconnect" is moot
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # Whatever the app raised on seeing the body cut (ClientDisconnect, a 400
            # for an unreadable body) follows from the refusal already answered.


async def _refuse_too_large(send: Send, scope: Scope, limit: int, what: str) -> None:
    await send_problem(
        send,
        scope,
        problems.PAYLOAD_TOO_LARGE,
        detail=f"{what}; a request body to {scope['path']} may have at most {limit} bytes",
        errors=[FieldProblem("body", f"more than {limit} bytes")],
        headers=[(b"connection", b"close")],
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


# headers_for(path) -> headers every answer to that path carries (unless the app set them).
HeadersForPath = Callable[[str], Sequence[tuple[bytes, bytes]]]


class ResponseHeaders:
    """Adds the security headers ``headers_for(path)`` names to every answer (an app's
    own value of the same header wins), and strips ``Content-Type``/``Content-Length``
    from 204 answers, which have no content to describe (RFC 9110, 15.3.5)."""

    def __init__(self, app: ASGIApp, headers_for: HeadersForPath) -> None:
        self.app = app
        self.headers_for = headers_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if message["status"] == 204:
                    headers = [
                        (k, v)
                        for k, v in headers
                        if k.lower() not in (b"content-type", b"content-length")
                    ]
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Headers every JSON answer of both services carries: nothing may sniff, frame or
# run it as a page, and no URL leaks to other sites through Referer.
API_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)

# FastAPI's /docs and /redoc pages load their scripts from a CDN with an inline
# bootstrap: they keep every header but a script policy (framing is still refused).
DOCS_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"frame-ancestors 'none'"),
    *(h for h in API_SECURITY_HEADERS if h[0] != b"content-security-policy"),
)


def api_security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of an answer to ``path`` of a JSON API."""
    if path.startswith(("/docs", "/redoc")):
        return DOCS_SECURITY_HEADERS
    return API_SECURITY_HEADERS


def uvicorn_proxy_options(trusted_proxies: str) -> dict[str, Any]:
    """uvicorn's ``proxy_headers``/``forwarded_allow_ips`` for the ``trusted_proxies``
    setting (comma-separated addresses or CIDRs): X-Forwarded-For and -Proto are read
    only from those peers, and not at all when none is set (uvicorn's own default
    trusts 127.0.0.1, so anything on the host could pick its client address)."""
    proxies = [p.strip() for p in trusted_proxies.split(",") if p.strip()]
    if not proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


class MetricsOnOwnPort:
    """Answers on the metrics port (``scope["server"]`` is the listening socket) with
    ``render()`` at ``/metrics`` and 404 for anything else; every other port goes to the
    app, which has no ``/metrics``. One process serves both sockets (:func:`serve`),
    so the counters are the app's own, but only the metrics socket shows them."""

    def __init__(
        self, app: ASGIApp, *, port: int, render: Callable[[], bytes], content_type: str
    ) -> None:
        self.app = app
        self.port = port
        self.render = render
        self.content_type = content_type.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] == "http" else None
        if server is None or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            await send_problem(
                send,
                scope,
                problems.NOT_FOUND,
                detail="the metrics port serves GET /metrics only",
            )
            return
        body = self.render()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", self.content_type),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def serve(
    app: ASGIApp | str,
    *,
    host: str,
    port: int,
    metrics_host: str,
    metrics_port: int,
    trusted_proxies: str,
    workers: int = 1,
) -> None:
    """Run uvicorn on the public ``host:port`` and the ``metrics_host:metrics_port``
    socket (the app must be wrapped in :class:`MetricsOnOwnPort`) until interrupted.

    ``app`` is an app, or with ``workers`` > 1 the import string of a factory; the
    workers then share both sockets. Proxy headers follow ``trusted_proxies``
    (:func:`uvicorn_proxy_options`). Logging stays ours (``log_config=None``).
    """
    if metrics_port == port:
        raise ValueError(f"the metrics port {metrics_port} must differ from the public port")
    common: dict[str, Any] = {
        "log_config": None,
        "factory": workers > 1,
        "workers": workers,
        **uvicorn_proxy_options(trusted_proxies),
    }
    config = uvicorn.Config(app, host=host, port=port, **common)
    metrics_socket = uvicorn.Config(app, host=metrics_host, port=metrics_port).bind_socket()
    sockets = [config.bind_socket(), metrics_socket]
    if workers > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)

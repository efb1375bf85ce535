"""An LTI 1.3 Advantage platform (the LMS side) for the tool's tests, written from the IMS
specifications, not from the tool's code:

* IMS Security Framework 1.0 §5.1.1: third-party initiated login (the platform sends
  ``iss``, ``login_hint``, ``target_link_uri``, ``lti_message_hint``, ``client_id``,
  ``lti_deployment_id`` to the tool's login URL), the authentication request checks
  (``scope=openid``, ``response_type=id_token``, ``response_mode=form_post``,
  ``prompt=none``, registered ``client_id`` and ``redirect_uri``) and the ID token
  posted back with ``state``; §4.1 client-credentials tokens with a JWT client
  assertion (RFC 7523) checked against the tool's JWKS;
* LTI Core 1.3 §5.3-5.4 message claims; Deep Linking 2.0 §4.4 (response JWT);
* AGS 2.0 line items and scores (media types, scopes); NRPS 2.0 memberships, paged
  with ``Link: rel="next"``.

Its own RSA keys (``rotate_key`` swaps in a new one and drops the old from the JWKS).
It runs under uvicorn on a loopback port (:class:`PlatformServer`).
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from infra import services

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
INSTRUCTOR, LEARNER = f"{LIS}membership#Instructor", f"{LIS}membership#Learner"
CLIENT_ID, DEPLOYMENT_ID = "learnstream-tool", "deployment-1"
CONTEXT_ID = "course-101"
AGS_SCOPES = {
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
}
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


def _key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": str(uuid.uuid4()), "alg": "RS256"})


@dataclass
class PlatformState:
    """What the platform knows and recorded; tests read and change it."""

    url: str
    tool_url: str = ""
    key: RSAKey = field(default_factory=_key)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # login_hint -> claims
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # message hint -> launch
    tokens: dict[str, set[str]] = field(default_factory=dict)  # access token -> scopes
    line_items: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> line item
    scores: list[dict[str, Any]] = field(default_factory=list)
    deep_link_items: list[dict[str, Any]] = field(default_factory=list)
    score_failures: int = 0  # next N score posts answer 503 (retry test)
    members_status: dict[str, str] = field(default_factory=dict)  # sub -> Active/Inactive

    @property
    def issuer(self) -> str:
        return self.url

    def rotate_key(self) -> RSAKey:
        old, self.key = self.key, _key()
        return old

    def id_token(
        self,
        *,
        nonce: str,
        login_hint: str,
        message_type: str,
        key: RSAKey | None = None,
        **overrides: Any,
    ) -> str:
        """An ID token as this platform signs it; ``overrides`` replace or drop (None) claims."""
        user = self.users[login_hint]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": login_hint,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "name": user["name"],
            "email": user["email"],
            f"{LTI}message_type": message_type,
            f"{LTI}version": "1.3.0",
            f"{LTI}deployment_id": DEPLOYMENT_ID,
            f"{LTI}target_link_uri": f"{self.tool_url}/v1/lti/launch",
            f"{LTI}roles": user["roles"],
            f"{LTI}context": {"id": CONTEXT_ID, "label": "MATH101", "title": "Fractions 101"},
            "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint": {
                "scope": sorted(AGS_SCOPES),
                "lineitems": f"{self.url}/courses/{CONTEXT_ID}/lineitems",
            },
            "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice": {
                "context_memberships_url": f"{self.url}/courses/{CONTEXT_ID}/memberships",
                "service_versions": ["2.0"],
            },
        }
        if message_type == "LtiResourceLinkRequest":
            claims[f"{LTI}resource_link"] = {"id": "link-1", "title": "Practice"}
        else:
            claims["https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"] = {
                "deep_link_return_url": f"{self.url}/deep_link_return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["window"],
                "data": "opaque-platform-data",
            }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        signer = key or self.key
        return jwt.encode({"alg": "RS256", "kid": str(signer.kid), "typ": "JWT"}, claims, signer)


def _auto_post(action: str, fields: dict[str, str]) -> HTMLResponse:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return HTMLResponse(
        f'<!DOCTYPE html><html><body><form id="f" method="post" action="{html.escape(action)}">'
        f"{inputs}</form><script>document.getElementById('f').submit()</script></body></html>"
    )


def create_platform(state: PlatformState) -> Starlette:
    async def start(request: Request) -> Response:
        """A user clicks the tool's link in the course: third-party initiated login."""
        hint = str(uuid.uuid4())
        login_hint = request.query_params["user"]
        message_type = request.query_params.get("message_type", "LtiResourceLinkRequest")
        state.pending[hint] = {"login_hint": login_hint, "message_type": message_type}
        return _auto_post(
            f"{state.tool_url}/v1/lti/login",
            {
                "iss": state.issuer,
                "login_hint": login_hint,
                "target_link_uri": f"{state.tool_url}/v1/lti/launch",
                "lti_message_hint": hint,
                "client_id": CLIENT_ID,
                "lti_deployment_id": DEPLOYMENT_ID,
            },
        )

    async def authorize(request: Request) -> Response:
        """The tool's authentication request (Security Framework §5.1.1.2)."""
        q = request.query_params
        expected = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": CLIENT_ID,
            "redirect_uri": f"{state.tool_url}/v1/lti/launch",
        }
        wrong = [k for k, v in expected.items() if q.get(k) != v]
        pending = state.pending.pop(q.get("lti_message_hint", ""), None)
        if (
            wrong
            or pending is None
            or pending["login_hint"] != q.get("login_hint")
            or not q.get("nonce")
        ):
            return JSONResponse({"error": "invalid_request", "wrong": wrong}, status_code=400)
        token = state.id_token(
            nonce=q["nonce"], login_hint=q["login_hint"], message_type=pending["message_type"]
        )
        return _auto_post(q["redirect_uri"], {"id_token": token, "state": q["state"]})

    async def jwks(_request: Request) -> Response:
        return JSONResponse(KeySet([state.key]).as_dict(private=False))

    async def tool_keys() -> KeySet:
        async with httpx.AsyncClient(timeout=10) as client:
            return KeySet.import_key_set((await client.get(f"{state.tool_url}/v1/lti/jwks")).json())

    async def token(request: Request) -> Response:
        """Client credentials with a JWT assertion signed by the tool (RFC 7523)."""
        form = await request.form()
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = jwt.decode(str(form["client_assertion"]), await tool_keys()).claims
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": CLIENT_ID},
                sub={"essential": True, "value": CLIENT_ID},
                aud={"essential": True, "value": f"{state.url}/token"},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(claims)
        except Exception as exc:  # any failure is invalid_client
            return JSONResponse({"error": "invalid_client", "detail": str(exc)}, status_code=401)
        scopes = set(str(form.get("scope", "")).split())
        access = uuid.uuid4().hex
        state.tokens[access] = scopes
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": 3600,
                "scope": " ".join(sorted(scopes)),
            }
        )

    def granted(request: Request, scope: str) -> bool:
        auth = request.headers.get("authorization", "")
        return scope in state.tokens.get(auth.removeprefix("Bearer "), set())

    async def lineitems(request: Request) -> Response:
        if not granted(request, "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"):
            return Response(status_code=401)
        if request.method == "GET":
            wanted = request.query_params.get("resource_id")
            found = [i for i in state.line_items.values() if wanted in (None, i.get("resourceId"))]
            return JSONResponse(
                found, media_type="application/vnd.ims.lis.v2.lineitemcontainer+json"
            )
        if request.headers.get("content-type") != "application/vnd.ims.lis.v2.lineitem+json":
            return Response(status_code=415)
        item = await request.json()
        item_id = f"{state.url}/courses/{CONTEXT_ID}/lineitems/{len(state.line_items) + 1}"
        state.line_items[item_id] = {**item, "id": item_id}
        return JSONResponse(
            state.line_items[item_id],
            status_code=201,
            media_type="application/vnd.ims.lis.v2.lineitem+json",
        )

    async def scores(request: Request) -> Response:
        if not granted(request, "https://purl.imsglobal.org/spec/lti-ags/scope/score"):
            return Response(status_code=401)
        if request.headers.get("content-type") != "application/vnd.ims.lis.v1.score+json":
            return Response(status_code=415)
        if state.score_failures:
            state.score_failures -= 1
            return Response(status_code=503)
        item_id = f"{state.url}/courses/{CONTEXT_ID}/lineitems/{request.path_params['item']}"
        score = await request.json()
        for required in ("userId", "activityProgress", "gradingProgress", "timestamp"):
            if required not in score:
                return JSONResponse({"error": f"{required} missing"}, status_code=400)
        state.scores.append({**score, "lineitem": item_id})
        return Response(status_code=204)

    async def memberships(request: Request) -> Response:
        if not granted(request, NRPS_SCOPE):
            return Response(status_code=401)
        members = [
            {
                "user_id": sub,
                "status": state.members_status.get(sub, "Active"),
                "name": u["name"],
                "email": u["email"],
                "roles": u["roles"],
            }
            for sub, u in sorted(state.users.items())
        ]
        page = int(request.query_params.get("page", "1"))
        half = (len(members) + 1) // 2
        body = {
            "id": str(request.url),
            "context": {"id": CONTEXT_ID},
            "members": members[:half] if page == 1 else members[half:],
        }
        headers = {}
        if page == 1:
            headers["Link"] = f'<{state.url}/courses/{CONTEXT_ID}/memberships?page=2>; rel="next"'
        return JSONResponse(
            body,
            headers=headers,
            media_type="application/vnd.ims.lti-nrps.v2.membershipcontainer+json",
        )

    async def deep_link_return(request: Request) -> Response:
        form = await request.form()
        claims = jwt.decode(str(form["JWT"]), await tool_keys()).claims
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": CLIENT_ID},
            aud={"essential": True, "value": state.issuer},
            exp={"essential": True},
            nonce={"essential": True},
        ).validate(claims)
        assert claims[f"{LTI}message_type"] == "LtiDeepLinkingResponse"
        assert claims[f"{LTI}deployment_id"] == DEPLOYMENT_ID
        assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "opaque-platform-data"
        state.deep_link_items = list(
            claims["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
        )
        return HTMLResponse(f"<p id='placed'>{len(state.deep_link_items)} items placed</p>")

    return Starlette(
        routes=[
            Route("/start", start),
            Route("/auth", authorize),
            Route("/jwks", jwks),
            Route("/token", token, methods=["POST"]),
            Route(f"/courses/{CONTEXT_ID}/lineitems", lineitems, methods=["GET", "POST"]),
            Route(f"/courses/{CONTEXT_ID}/lineitems/{{item}}/scores", scores, methods=["POST"]),
            Route(f"/courses/{CONTEXT_ID}/memberships", memberships),
            Route("/deep_link_return", deep_link_return, methods=["POST"]),
        ]
    )


class PlatformServer:
    """The platform under uvicorn on a free loopback port, in a thread."""

    def __init__(self) -> None:
        port = services.free_port()
        self.state = PlatformState(url=f"http://127.0.0.1:{port}")
        config = uvicorn.Config(
            create_platform(self.state),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="lti-platform", daemon=True)

    def __enter__(self) -> PlatformState:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self.state
            threading.Event().wait(0.05)
        raise AssertionError("the platform did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def registration(state: PlatformState) -> dict[str, Any]:
    """What an admin pastes into Learnstream for this platform."""
    return {
        "platform_id": "canvas-test",
        "issuer": state.issuer,
        "client_id": CLIENT_ID,
        "auth_login_url": f"{state.url}/auth",
        "auth_token_url": f"{state.url}/token",
        "jwks_url": f"{state.url}/jwks",
        "deployment_ids": [DEPLOYMENT_ID],
    }

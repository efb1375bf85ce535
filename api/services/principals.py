"""Who is calling: a client app (API key) or a signed-in user with roles, always in one tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from learnstream.apikeys import Scope


class Role(StrEnum):
    """What a user may do; a user can hold several roles within their tenant."""

    LEARNER = "learner"
    TEACHER = "teacher"
    AUTHOR = "author"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    OPERATOR = "operator"
    # Deployment-wide operations views (every tenant's pipeline offsets). Granted in SQL
    # by whoever runs the deployment, never through the API (api.routes.users refuses it).
    PLATFORM_OPERATOR = "platform_operator"


class PrincipalKind(StrEnum):
    """Client apps authenticate with an API key, people with a user access token."""

    CLIENT_APP = "client_app"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    ``subject_id`` is the API key's key_id for a client app, the user's id for a user.
    ``tenant_id`` bounds everything the caller can see: every query filters on it.
    """

    tenant_id: str
    subject_id: str
    kind: PrincipalKind
    roles: frozenset[Role] = field(default_factory=frozenset)
    # True when the access token was issued after a TOTP (or backup code) check.
    mfa_verified: bool = False
    # What a client app's key may do (empty for users): see learnstream.apikeys.Scope.
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    @property
    def is_client_app(self) -> bool:
        """A trusted backend of the tenant (it posts every learner's events)."""
        return self.kind is PrincipalKind.CLIENT_APP

    def has_role(self, *roles: Role) -> bool:
        """True if the caller is a user holding any of ``roles``, MFA or not.

        Not an access rule: decide access with :mod:`api.services.access` (``holds_role``,
        route policies), which demands MFA where a role requires it.
        """
        return self.kind is PrincipalKind.USER and not self.roles.isdisjoint(roles)

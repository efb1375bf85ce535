"""The demo's people, so a newcomer can sign in after ``make demo`` and see the school.

* a teacher, teaching a class of the first ``CLASS_SIZE`` replayed learners;
* learner accounts for those learners, filed under the replayed learner ids
  (``users.learner_id``), so their dashboards show the replayed answers; the first
  ``SIGN_IN_LEARNERS`` of them get a password;
* an operator (tenant fraud review and platform pipeline health) with MFA enrolled,
  whose TOTP secret is printed (local mode only) so it can be added to an
  authenticator app or turned into a code with ``oathtool``.

Accounts go through the account services as an admin would create them (the class
and its members through :mod:`api.services.classes` as an MFA-signed-in admin). The
password is one per installation (:mod:`learnstream.installation_secrets`, 0600 under
``<data_dir>/secrets/``), so re-runs keep it; every step is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from api.exceptions import ConflictError
from api.services import accounts, classes, learner_ids, mfa
from api.services.principals import Principal, PrincipalKind, Role
from learnstream.installation_secrets import installation_secret
from learnstream.settings import Settings

CLASS_SIZE = 30
SIGN_IN_LEARNERS = 2
CLASS_NAME = "Demo class (replayed ASSISTments learners)"
# The admin acting for `make demo` when it creates the class and enrols members.
SETUP_ADMIN_ID = "00000000-0000-4000-8000-00000000a003"


@dataclass(frozen=True, slots=True)
class DemoSignIn:
    """How to sign in as one demo account on the dashboard."""

    role: str
    email: str
    password: str
    learner_id: str | None = None
    totp_secret: str | None = None  # base32, operator only
    otpauth_uri: str | None = None


def demo_password(settings: Settings) -> str:
    """The demo accounts' password: 20 characters, generated once per installation."""
    return installation_secret(settings.data_dir, "demo_password")[:20]


async def _user_id(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, email: str, **create: object
) -> str:
    try:
        user = await accounts.create_user(
            pool,
            settings,
            tenant_id=tenant_id,
            email_address=email,
            **create,  # type: ignore[arg-type]
        )
        return user.id
    except ConflictError:  # an earlier run created it
        found = await pool.fetchval(
            "SELECT id::text FROM users WHERE tenant_id = $1 AND email = $2", tenant_id, email
        )
        return str(found)


async def ensure_accounts(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    learner_ids_in_order: list[str],
    now: datetime,
) -> list[DemoSignIn]:
    """Create (or find) the demo's teacher, class, learners and operator; how to sign in.

    ``learner_ids_in_order``: the replayed learner ids, the class takes the first
    ``CLASS_SIZE``. Refuses in production: it prints a TOTP secret.
    """
    if settings.environment == "production":
        raise RuntimeError("demo accounts print their secrets: never in production")
    password = demo_password(settings)
    domain = f"{tenant_id}.example.org"
    teacher_email = f"teacher@{domain}"
    school_class = await _teacher_and_class(pool, settings, tenant_id, teacher_email, password, now)
    sign_ins = [DemoSignIn("teacher", teacher_email, password)]
    for position, learner_id in enumerate(learner_ids_in_order[:CLASS_SIZE]):
        email = f"learner-{learner_id}@{domain}"
        can_sign_in = position < SIGN_IN_LEARNERS
        await _enrol_learner(
            pool,
            settings,
            tenant_id,
            email,
            learner_id,
            class_id=school_class.class_id,
            password=password if can_sign_in else None,
            now=now,
        )
        if can_sign_in:
            sign_ins.append(DemoSignIn("learner", email, password, learner_id=learner_id))
    sign_ins.append(
        await _operator(pool, redis, settings, tenant_id, f"operator@{domain}", password, now)
    )
    return sign_ins


async def _teacher_and_class(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant_id: str,
    email: str,
    password: str,
    now: datetime,
) -> classes.SchoolClass:
    """The demo teacher's account and their class named :data:`CLASS_NAME`, created
    unless an earlier run did."""
    teacher_id = await _user_id(
        pool,
        settings,
        tenant_id,
        email,
        password=password,
        display_name="Demo Teacher",
        roles=frozenset({Role.TEACHER}),
        email_verified=True,
        now=now,
    )
    teacher = Principal(tenant_id, teacher_id, PrincipalKind.USER, frozenset({Role.TEACHER}))
    taught = [c for c in await classes.classes_of(pool, teacher) if c.name == CLASS_NAME]
    return taught[0] if taught else await classes.create_class(pool, teacher, name=CLASS_NAME)


async def _enrol_learner(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant_id: str,
    email: str,
    learner_id: str,
    *,
    class_id: str,
    password: str | None,
    now: datetime,
) -> None:
    """One replayed learner's account (``password`` None: no sign-in), filed under
    ``learner_id`` and a member of the class; each step skipped when already done."""
    user_id = await _user_id(
        pool,
        settings,
        tenant_id,
        email,
        password=password,
        display_name=f"Learner {learner_id}",
        roles=frozenset({Role.LEARNER}),
        email_verified=True,
        now=now,
    )
    # File the account under the id the replayed events carry.
    if await learner_ids.learner_id_of(pool, tenant_id=tenant_id, user_id=user_id) != learner_id:
        await learner_ids.set_learner_id(
            pool,
            tenant_id=tenant_id,
            user_id=user_id,
            learner_id=learner_id,
            admin_id=SETUP_ADMIN_ID,
        )
    admin = Principal(
        tenant_id, SETUP_ADMIN_ID, PrincipalKind.USER, frozenset({Role.ADMIN}), mfa_verified=True
    )
    await classes.add_member(
        pool,
        admin,
        class_id=class_id,
        user_id=user_id,
        member_role=classes.MemberRole.LEARNER,
    )


async def _operator(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    tenant_id: str,
    email: str,
    password: str,
    now: datetime,
) -> DemoSignIn:
    """The demo operator's account with MFA enrolled, and how to sign in as them."""
    operator_id = await _user_id(
        pool,
        settings,
        tenant_id,
        email,
        password=password,
        display_name="Demo Operator",
        # Platform operator too, so the demo's operator also sees the pipeline's health.
        roles=frozenset({Role.OPERATOR, Role.PLATFORM_OPERATOR}),
        email_verified=True,
        now=now,
    )
    secret = await _operator_totp_secret(pool, redis, settings, tenant_id, operator_id, now)
    uri = mfa.provisioning_uri(secret, account=email, issuer=settings.mfa_issuer)
    return DemoSignIn("operator", email, password, totp_secret=secret, otpauth_uri=uri)


async def _operator_totp_secret(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    tenant_id: str,
    user_id: str,
    now: datetime,
) -> str:
    """The operator's TOTP secret: enrolled now, or read back from an earlier run."""
    stored = await pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", user_id)
    if stored:
        return mfa.open_sealed(stored, user_id=user_id, ring=mfa.keyring(settings)).secret
    enrolment = await mfa.begin_enrolment(
        pool, user_id=user_id, issuer=settings.mfa_issuer, settings=settings
    )
    await mfa.confirm_enrolment(
        pool,
        redis,
        settings,
        tenant_id=tenant_id,
        user_id=user_id,
        code=mfa.code_at(enrolment.secret, now),
        ip=None,
        now=now,
    )
    return enrolment.secret

"""Sign-up, sign-in, tokens, password reset, unlock, first-run enrolment and MFA enrolment."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import (
    ClientIp,
    CurrentUser,
    EmailSenderDep,
    LimitedByIp,
    Now,
    PoolDep,
    Public,
    RedisDep,
    SettingsDep,
    SignedInClaims,
)
from api.exceptions import InvalidInputError, NotAuthenticatedError
from api.schemas.auth import (
    Accepted,
    AccountEnrolledPublic,
    AccountEnrolRequest,
    BackupCodesPublic,
    EnrolmentPublic,
    LoginRequest,
    LogoutRequest,
    MfaChallengePublic,
    MfaCodeRequest,
    MfaLoginRequest,
    PasswordRequest,
    PasswordResetConfirm,
    RefreshRequest,
    RegisterRequest,
    TenantEmailRequest,
    TokenPairPublic,
    TokenRequest,
    VerifiedPublic,
)
from api.services import accounts, enrolment, mfa, recovery, sessions

# Every auth endpoint is also limited per client IP (credential stuffing, mail bombing).
router = APIRouter(prefix="/v1/auth", tags=["auth"], dependencies=[LimitedByIp])


def _pair(pair: sessions.TokenPair) -> TokenPairPublic:
    return TokenPairPublic(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in_s,
        mfa_verified=pair.mfa_verified,
    )


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a learner account",
    dependencies=[Public],
)
async def register(
    body: RegisterRequest,
    pool: PoolDep,
    settings: SettingsDep,
    sender: EmailSenderDep,
    ip: ClientIp,
    now: Now,
) -> Accepted:
    """Always 202 for a valid request: whether or not the address already has an account,
    and whether or not the tenant exists and takes registrations (then nothing is made)."""
    await accounts.register(
        pool,
        settings,
        sender,
        tenant_id=body.tenant_id,
        email_address=str(body.email),
        password=body.password,
        display_name=body.display_name,
        ip=ip,
        now=now,
    )
    return Accepted(detail="check your mailbox to confirm the address")


@router.post(
    "/verify-email", summary="Confirm an email address with the mailed token", dependencies=[Public]
)
async def verify_email(body: TokenRequest, pool: PoolDep, now: Now) -> VerifiedPublic:
    user_id = await accounts.verify_email(pool, token=body.token, now=now)
    return VerifiedPublic(user_id=user_id, email_verified=True)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Mail a new token",
    dependencies=[Public],
)
async def resend_verification(
    body: TenantEmailRequest, pool: PoolDep, settings: SettingsDep, sender: EmailSenderDep, now: Now
) -> Accepted:
    await accounts.resend_verification(
        pool, settings, sender, tenant_id=body.tenant_id, email_address=str(body.email), now=now
    )
    return Accepted(detail="if the address has an unconfirmed account, a new token was mailed")


@router.post("/login", summary="Sign in with email and password", dependencies=[Public])
async def login(
    body: LoginRequest,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    sender: EmailSenderDep,
    ip: ClientIp,
    now: Now,
) -> TokenPairPublic | MfaChallengePublic:
    """Tokens, or (``mfa_required: true``) a challenge to answer at /v1/auth/login/mfa."""
    outcome = await sessions.login(
        pool,
        redis,
        settings,
        sender,
        tenant_id=body.tenant_id,
        email_address=str(body.email),
        password=body.password,
        ip=ip,
        now=now,
    )
    if isinstance(outcome, sessions.MfaChallenge):
        return MfaChallengePublic(mfa_token=outcome.mfa_token)
    return _pair(outcome)


@router.post(
    "/login/mfa", summary="Second sign-in step: TOTP or backup code", dependencies=[Public]
)
async def login_mfa(
    body: MfaLoginRequest,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    sender: EmailSenderDep,
    ip: ClientIp,
    now: Now,
) -> TokenPairPublic:
    if (body.code is None) == (body.backup_code is None):
        raise InvalidInputError(
            "send exactly one of code and backup_code", field="body.code", reason="one required"
        )
    pair = await sessions.complete_mfa_login(
        pool,
        redis,
        settings,
        sender,
        mfa_token=body.mfa_token,
        code=body.code,
        backup_code=body.backup_code,
        ip=ip,
        now=now,
    )
    return _pair(pair)


@router.post(
    "/refresh", summary="Trade a refresh token for a new pair (rotation)", dependencies=[Public]
)
async def refresh(
    body: RefreshRequest,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> TokenPairPublic:
    pair = await sessions.refresh(
        pool, redis, settings, refresh_token=body.refresh_token, ip=ip, now=now
    )
    return _pair(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out")
async def logout(
    body: LogoutRequest,
    claims: SignedInClaims,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> None:
    """Revokes this session's refresh family (and the given refresh token's) and ends
    every access token of the user issued until now (other devices refresh once)."""
    await sessions.logout(
        pool, redis, settings, claims=claims, refresh_token=body.refresh_token, ip=ip, now=now
    )


@router.post(
    "/password-reset/request",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Mail a reset token",
    dependencies=[Public],
)
async def request_password_reset(
    body: TenantEmailRequest,
    pool: PoolDep,
    settings: SettingsDep,
    sender: EmailSenderDep,
    ip: ClientIp,
    now: Now,
) -> Accepted:
    await recovery.request_password_reset(
        pool,
        settings,
        sender,
        tenant_id=body.tenant_id,
        email_address=str(body.email),
        ip=ip,
        now=now,
    )
    return Accepted(detail="if the address has an account, a reset token was mailed")


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with the mailed token",
    dependencies=[Public],
)
async def confirm_password_reset(
    body: PasswordResetConfirm,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> None:
    """Also signs the user out everywhere: refresh tokens revoked, access tokens ended."""
    await recovery.reset_password(
        pool, redis, settings, token=body.token, new_password=body.new_password, ip=ip, now=now
    )


@router.post(
    "/unlock",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unlock with the mailed token",
    dependencies=[Public],
)
async def unlock(
    body: TokenRequest,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> None:
    await recovery.unlock_with_token(pool, redis, settings, token=body.token, ip=ip, now=now)


@router.post(
    "/enrol",
    summary="Set the first password with a one-time enrolment link",
    dependencies=[Public],
)
async def enrol_account(
    body: AccountEnrolRequest,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> AccountEnrolledPublic:
    """Spends the link's token (single use, expiring) and sets the password; the account
    then signs in at /v1/auth/login. 422 naming ``body.token`` for a dead link."""
    enrolled = await enrolment.complete(
        pool, redis, settings, token=body.token, password=body.password, ip=ip, now=now
    )
    return AccountEnrolledPublic(
        user_id=enrolled.user_id,
        tenant_id=enrolled.tenant_id,
        email=enrolled.email,
        mfa_required=enrolled.mfa_required,
    )


@router.post("/mfa/enrol", summary="Start TOTP enrolment")
async def mfa_enrol(user: CurrentUser, pool: PoolDep, settings: SettingsDep) -> EnrolmentPublic:
    """A new pending secret; it takes effect once /v1/auth/mfa/confirm gets a valid code.

    With MFA already on, only a session signed in with MFA may re-enrol (401 otherwise).
    """
    pending = await mfa.begin_enrolment(
        pool,
        user_id=user.subject_id,
        issuer=settings.mfa_issuer,
        settings=settings,
        session_mfa_verified=user.mfa_verified,
    )
    return EnrolmentPublic(
        secret=pending.secret,
        provisioning_uri=pending.provisioning_uri,
        qr_svg=mfa.qr_svg(pending.provisioning_uri),
    )


@router.post("/mfa/confirm", summary="Finish TOTP enrolment with a first code")
async def mfa_confirm(
    body: MfaCodeRequest,
    user: CurrentUser,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    now: Now,
) -> BackupCodesPublic:
    """Turns MFA on; sessions that did not pass MFA (this one too, if so) are signed out."""
    codes = await mfa.confirm_enrolment(
        pool,
        redis,
        settings,
        tenant_id=user.tenant_id,
        user_id=user.subject_id,
        code=body.code,
        ip=ip,
        now=now,
        session_mfa_verified=user.mfa_verified,
    )
    return BackupCodesPublic(backup_codes=codes)


@router.post("/mfa/backup-codes", summary="Replace the backup codes")
async def mfa_backup_codes(user: CurrentUser, pool: PoolDep, ip: ClientIp) -> BackupCodesPublic:
    if not user.mfa_verified:
        raise NotAuthenticatedError(
            "sign in with MFA before replacing backup codes",
            field="header.Authorization",
            reason="MFA sign-in required",
        )
    codes = await mfa.regenerate_backup_codes(
        pool, tenant_id=user.tenant_id, user_id=user.subject_id, ip=ip
    )
    return BackupCodesPublic(backup_codes=codes)


@router.post("/mfa/disable", status_code=status.HTTP_204_NO_CONTENT, summary="Turn MFA off")
async def mfa_disable(
    body: PasswordRequest,
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    ip: ClientIp,
) -> None:
    """Needs an MFA-verified session and the password again."""
    if not user.mfa_verified:
        raise NotAuthenticatedError(
            "sign in with MFA before turning it off",
            field="header.Authorization",
            reason="MFA sign-in required",
        )
    if not await accounts.check_password(
        pool, settings, user_id=user.subject_id, password=body.password
    ):
        raise NotAuthenticatedError(
            "password is wrong", field="body.password", reason="wrong password"
        )
    await mfa.disable(
        pool, tenant_id=user.tenant_id, user_id=user.subject_id, actor_id=user.subject_id, ip=ip
    )

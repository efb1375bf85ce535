"""Request and response bodies of the auth routes (api/routes/auth.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, EmailStr, Field

TenantId = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")


Password = Field(min_length=1, max_length=1024)


class Accepted(BaseModel):
    """The request was taken; what happens next arrives by email."""

    status: Literal["accepted"] = "accepted"
    detail: str


class RegisterRequest(BaseModel):
    tenant_id: str = TenantId
    email: EmailStr
    password: str = Password
    display_name: str = Field(default="", max_length=200)


class TenantEmailRequest(BaseModel):
    tenant_id: str = TenantId
    email: EmailStr


class TokenRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class LoginRequest(BaseModel):
    tenant_id: str = TenantId
    email: EmailStr
    password: str = Password


class MfaLoginRequest(BaseModel):
    mfa_token: str = Field(min_length=1, max_length=2000)
    code: str | None = Field(default=None, max_length=12, description="6-digit TOTP code")
    backup_code: str | None = Field(default=None, max_length=20)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200)


class PasswordResetConfirm(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Password


class MfaCodeRequest(BaseModel):
    code: str = Field(min_length=1, max_length=12)


class PasswordRequest(BaseModel):
    password: str = Password


class TokenPairPublic(BaseModel):
    """Bearer tokens: send ``access_token``; trade ``refresh_token`` at /v1/auth/refresh."""

    mfa_required: Literal[False] = False
    token_type: Literal["bearer"] = "bearer"
    access_token: str
    refresh_token: str
    expires_in: int = Field(description="seconds the access token stays valid")
    mfa_verified: bool


class MfaChallengePublic(BaseModel):
    """Password accepted; send a TOTP or backup code with ``mfa_token`` to /v1/auth/login/mfa."""

    mfa_required: Literal[True] = True
    mfa_token: str


class EnrolmentPublic(BaseModel):
    secret: str = Field(description="base32 TOTP secret, for manual entry")
    provisioning_uri: str = Field(description="otpauth:// URI to show as a QR code")
    qr_svg: str = Field(description="the provisioning URI as an SVG QR code (no script)")


class AccountEnrolRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="from the enrolment link")
    password: str = Password


class AccountEnrolledPublic(BaseModel):
    """The first password is set: sign in with it (then enrol TOTP if ``mfa_required``)."""

    user_id: str
    tenant_id: str
    email: str
    mfa_required: bool


class BackupCodesPublic(BaseModel):
    backup_codes: list[str] = Field(description="each works once; shown only now")


class VerifiedPublic(BaseModel):
    user_id: str
    email_verified: bool

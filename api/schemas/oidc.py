"""Request and response bodies of the single sign-on routes (api/routes/oidc.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

PROVIDER_ID_PATTERN = r"^[a-z0-9-]{1,40}$"


class ProviderButton(BaseModel):
    provider_id: str
    display_name: str
    start_url: str = Field(description="where the button links: the sign-in starts there")


class IdentityProviderCreate(BaseModel):
    provider_id: str = Field(pattern=PROVIDER_ID_PATTERN)
    display_name: str = Field(min_length=1, max_length=80)
    issuer: str = Field(min_length=8, max_length=500, description="the OpenID issuer URL")
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: SecretStr = Field(min_length=1, max_length=2000)
    link_by_email: bool = Field(
        default=False,
        description="link a first sign-in to the account with the same verified e-mail",
    )


class IdentityProviderPublic(BaseModel):
    provider_id: str
    display_name: str
    issuer: str
    client_id: str
    link_by_email: bool
    redirect_uri: str = Field(description="register this at the provider")


class SignInCode(BaseModel):
    code: str = Field(min_length=10, max_length=200)

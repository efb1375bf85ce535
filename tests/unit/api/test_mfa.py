"""TOTP acceptance window, replay refusal, and backup-code normalisation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from api.services import mfa
from api.services.principals import Role
from learnstream.exceptions import ConfigurationError

NOW = datetime(2024, 3, 1, 9, 0, 15, tzinfo=UTC)
SECRET = pyotp.random_base32(32)
STEP = pyotp.TOTP(SECRET).timecode(NOW)


@pytest.mark.parametrize("offset_steps", [-1, 0, 1])
def test_codes_within_one_step_of_now_are_accepted(offset_steps: int) -> None:
    code = mfa.code_at(SECRET, NOW + timedelta(seconds=30 * offset_steps))
    assert mfa.matching_step(SECRET, code, now=NOW) == STEP + offset_steps


@pytest.mark.parametrize("offset_steps", [-3, -2, 2, 3])
def test_codes_further_away_are_refused(offset_steps: int) -> None:
    code = mfa.code_at(SECRET, NOW + timedelta(seconds=30 * offset_steps))
    assert mfa.matching_step(SECRET, code, now=NOW) is None


def test_a_step_already_used_cannot_be_replayed() -> None:
    code = mfa.code_at(SECRET, NOW)
    assert mfa.matching_step(SECRET, code, now=NOW, last_step=STEP) is None
    assert mfa.matching_step(SECRET, code, now=NOW, last_step=STEP - 1) == STEP


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert mfa.matching_step(SECRET, code, now=NOW) is None


def test_code_typed_with_spaces_is_accepted() -> None:
    code = mfa.code_at(SECRET, NOW)
    assert mfa.matching_step(SECRET, f" {code[:3]} {code[3:]} ", now=NOW) == STEP


def test_backup_codes_are_distinct_and_typed_any_way() -> None:
    codes = mfa.new_backup_codes()
    assert len(set(codes)) == mfa.BACKUP_CODE_COUNT
    code = codes[0]
    assert mfa.backup_code_sha256(code) == mfa.backup_code_sha256(code.upper().replace("-", " "))
    assert mfa.backup_code_sha256(code) != mfa.backup_code_sha256(codes[1])


@pytest.mark.parametrize(
    ("roles", "required"),
    [
        ({Role.LEARNER}, False),
        ({Role.TEACHER, Role.AUTHOR, Role.REVIEWER}, False),
        ({Role.ADMIN}, True),
        ({Role.OPERATOR}, True),
        ({Role.LEARNER, Role.ADMIN}, True),
    ],
)
def test_mfa_required_for_admin_roles(roles: set[Role], required: bool) -> None:
    assert mfa.mfa_required(frozenset(roles)) is required


def test_provisioning_uri_names_issuer_and_account() -> None:
    uri = mfa.provisioning_uri(SECRET, account="ada@example.org", issuer="Learnstream")
    assert uri.startswith("otpauth://totp/Learnstream:ada%40example.org?")
    assert f"secret={SECRET}" in uri


RING = mfa._keyring(base64.b64encode(bytes(range(32))).decode())


def test_sealed_secret_round_trips_and_hides_the_secret() -> None:
    sealed = mfa.seal(SECRET, user_id="u-1", ring=RING)
    assert sealed.startswith(f"enc1:{RING.current_id}:")
    assert SECRET not in sealed
    assert mfa.seal(SECRET, user_id="u-1", ring=RING) != sealed  # fresh nonce each time
    assert mfa.open_sealed(sealed, user_id="u-1", ring=RING) == mfa.Opened(SECRET, stale=False)
    assert mfa.open_sealed(SECRET, user_id="u-1", ring=RING) == mfa.Opened(SECRET, stale=True)


def test_altered_or_moved_ciphertext_is_refused() -> None:
    sealed = mfa.seal(SECRET, user_id="u-1", ring=RING)
    with pytest.raises(ConfigurationError, match="another account"):
        mfa.open_sealed(sealed, user_id="u-2", ring=RING)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(ConfigurationError, match="altered"):
        mfa.open_sealed(flipped, user_id="u-1", ring=RING)

"""infra.cli: the `learnstream` command line parses what the README shows, refuses the rest."""

from __future__ import annotations

import tomllib

import pytest

from api.services.principals import Role
from infra import cli
from learnstream.settings import REPO_ROOT


def test_the_package_installs_the_learnstream_command() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["learnstream"] == "infra.cli:main"
    assert callable(cli.main)


def test_readme_commands_parse() -> None:
    tenant = cli.parse_args(["tenant", "create", "school", "--name", "Example School"])
    assert (tenant.noun, tenant.verb, tenant.tenant_id, tenant.name) == (
        "tenant",
        "create",
        "school",
        "Example School",
    )
    assert tenant.closed is False
    user = cli.parse_args(
        [
            *("user", "create", "--tenant", "school", "--email", "Head@Example.org"),
            *("--role", "admin", "--role", "teacher"),
        ]
    )
    assert user.role == ["admin", "teacher"]
    assert user.email == "Head@example.org"  # the domain is normalised, the local part kept
    assert user.new_link is False
    key = cli.parse_args(
        ["apikey", "create", "--tenant", "school", "--app", "quiz", "--scope", "views:read"]
    )
    assert key.scope == ["views:read"]
    assert cli.parse_args(["apikey", "create", "--tenant", "s", "--app", "a"]).scope is None
    assert cli.parse_args(["mail", "show", "last"]).name == "last"


def test_every_role_and_scope_is_offered() -> None:
    for role in Role:
        args = cli.parse_args(
            ["user", "create", "--tenant", "t", "--email", "a@b.org", "--role", role.value]
        )
        assert args.role == [role.value]


@pytest.mark.parametrize(
    "argv",
    [
        ["tenant", "create", "no spaces"],
        ["tenant", "create", "x" * 101],
        ["user", "create", "--tenant", "t", "--email", "not-an-address", "--role", "admin"],
        ["user", "create", "--tenant", "t", "--email", "a@b.org", "--role", "king"],
        ["user", "create", "--tenant", "t", "--email", "a@b.org"],  # a role is required
        ["apikey", "create", "--tenant", "t", "--app", "a", "--scope", "users:write"],
        ["mail", "delete"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)
    assert exited.value.code == 2
    assert "usage: learnstream" in capsys.readouterr().err

"""``learnstream``: the first-run command line (installed by pyproject's [project.scripts]).

    learnstream tenant create school --name "Example School"
    learnstream user create --tenant school --email head@example.org --role admin
    learnstream apikey create --tenant school --app quiz-app --scope events:write
    learnstream mail list            # the development mailbox (local mode)
    learnstream mail show <name>

Every ``create`` is idempotent: run again, it prints what exists (and, for a user who
never enrolled, how to get a fresh link) and exits 0. A new user gets no password but a
one-time enrolment link to open in the browser: it sets the password and, for roles
that need it (admin, operator), enrols TOTP with a QR code on the dashboard page.
Settings come from the environment like every service's (``LEARNSTREAM_*``), and the
command connects to PostgreSQL as the services' role. Without the package installed:
``python -m infra.cli ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

import asyncpg
from email_validator import EmailNotValidError, validate_email

from api.exceptions import ApiError
from api.services import dev_mailbox, mfa, provisioning
from api.services.principals import Role
from learnstream import apikeys, db
from learnstream.apikeys import Scope
from learnstream.settings import Settings, get_settings

EXIT_REFUSED = 1  # the request cannot be done as asked (unknown tenant, bad input)
# The API's own rule for tenant ids (api/schemas/auth.py).
_TENANT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def tenant_id(value: str) -> str:
    """An argparse type: a tenant id as the API accepts one."""
    if not _TENANT_ID.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a tenant id (1-100 letters, digits, '.', '_' or '-')"
        )
    return value


def email_address(value: str) -> str:
    """An argparse type: a syntactically valid email address (not checked for delivery)."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an email address: {exc}") from exc


def parser() -> argparse.ArgumentParser:
    """The command line, ``learnstream <noun> <verb> [options]``."""
    top = argparse.ArgumentParser(
        prog="learnstream", description="Learnstream first run: tenants, users, API keys, mail."
    )
    nouns = top.add_subparsers(dest="noun", required=True, metavar="{tenant,user,apikey,mail}")

    tenant = nouns.add_parser("tenant", help="tenants (schools, organisations)")
    tenant_verbs = tenant.add_subparsers(dest="verb", required=True)
    create = tenant_verbs.add_parser("create", help="create a tenant unless it exists")
    create.add_argument(
        "tenant_id", type=tenant_id, help="short id, e.g. school (letters, digits, . _ -)"
    )
    create.add_argument("--name", help="display name (default: the id)")
    create.add_argument(
        "--closed",
        action="store_true",
        help="no self-registration: accounts only from this command or an admin",
    )

    user = nouns.add_parser("user", help="accounts")
    user_verbs = user.add_subparsers(dest="verb", required=True)
    create = user_verbs.add_parser(
        "create", help="create an account with a one-time enrolment link, unless it exists"
    )
    create.add_argument("--tenant", required=True, type=tenant_id)
    create.add_argument("--email", required=True, type=email_address)
    create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[r.value for r in Role],
        help="repeat for several roles (admin and operator need TOTP, set up at first sign-in)",
    )
    create.add_argument("--name", default="", help="display name")
    create.add_argument(
        "--new-link",
        action="store_true",
        help="for an existing account that never enrolled: a fresh link (the old one dies)",
    )

    apikey = nouns.add_parser("apikey", help="API keys of client apps")
    apikey_verbs = apikey.add_subparsers(dest="verb", required=True)
    create = apikey_verbs.add_parser("create", help="create a key unless the app has one")
    create.add_argument("--tenant", required=True, type=tenant_id)
    create.add_argument("--app", required=True, help="the client app's name (1-200 characters)")
    create.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="repeat for several; default events:write",
    )

    mail = nouns.add_parser("mail", help="the development mailbox (mail_delivery=mailbox)")
    mail_verbs = mail.add_subparsers(dest="verb", required=True)
    mail_verbs.add_parser("list", help="every mail, oldest first")
    show = mail_verbs.add_parser("show", help="one mail in full")
    show.add_argument("name", help="the mail's name from `mail list`, or `last`")
    return top


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parsed ``argv`` (argparse exits 2 with usage on an error)."""
    return parser().parse_args(list(argv))


async def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Do what ``args`` asks; write what a person needs to ``out``; the exit status."""
    if args.noun == "mail":
        return _mail(args, settings, out)
    pool = await db.create_pool(settings, max_size=2)
    try:
        if args.noun == "tenant":
            return await _tenant(args, pool, out)
        if args.noun == "user":
            return await _user(args, pool, settings, out)
        return await _apikey(args, pool, out)
    except ApiError as exc:
        print(f"refused: {exc}", file=out)
        return EXIT_REFUSED
    finally:
        await pool.close()


async def _tenant(args: argparse.Namespace, pool: asyncpg.Pool, out: TextIO) -> int:
    outcome = await provisioning.ensure_tenant(
        pool,
        tenant_id=args.tenant_id,
        name=args.name or args.tenant_id,
        allow_self_registration=not args.closed,
    )
    verb = "created" if outcome.created else "exists (nothing changed)"
    print(f"tenant {outcome.tenant_id} ({outcome.name}): {verb}", file=out)
    return 0


async def _user(
    args: argparse.Namespace, pool: asyncpg.Pool, settings: Settings, out: TextIO
) -> int:
    outcome = await provisioning.ensure_user(
        pool,
        settings,
        tenant_id=args.tenant,
        email_address=args.email,
        roles=frozenset(Role(r) for r in args.role),
        display_name=args.name,
        new_link=args.new_link,
        now=datetime.now(UTC),
    )
    user = outcome.user
    verb = "created" if outcome.created else "exists"
    print(f"user {user.email} in {user.tenant_id}: {verb}", file=out)
    print(f"  id     {user.id}", file=out)
    print(f"  roles  {', '.join(sorted(user.roles))}", file=out)
    if outcome.link is not None:
        until = f"{outcome.link.expires_at:%Y-%m-%d %H:%M} UTC"
        print(f"  enrolment link (works once, until {until}):", file=out)
        print(f"    {outcome.link.url}", file=out)
        print(
            "  open it to set a password"
            + (" and set up an authenticator app (TOTP)" if mfa.mfa_required(user.roles) else ""),
            file=out,
        )
    if outcome.note:
        print(f"  note: {outcome.note}", file=out)
    return 0


async def _apikey(args: argparse.Namespace, pool: asyncpg.Pool, out: TextIO) -> int:
    scopes = apikeys.parse_scopes(args.scope) if args.scope else apikeys.DEFAULT_SCOPES
    outcome = await provisioning.ensure_api_key(
        pool, tenant_id=args.tenant, app_name=args.app, scopes=scopes
    )
    verb = "created" if outcome.issued is not None else "exists"
    print(f"API key {outcome.key_id} for {args.app} in {args.tenant}: {verb}", file=out)
    print(f"  scopes {', '.join(sorted(outcome.scopes))}", file=out)
    if outcome.issued is not None:
        print(f"  key    {outcome.issued.plaintext}", file=out)
        print("  (shown only now: store it in the client app's secrets)", file=out)
    if outcome.note:
        print(f"  note: {outcome.note}", file=out)
    return 0


def _mail(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    folder = dev_mailbox.mailbox_dir(settings)
    if settings.mail_transport != "mailbox":
        print(
            f"note: mail goes to the SMTP relay {settings.smtp_host}:{settings.smtp_port} "
            "(LEARNSTREAM_MAIL_DELIVERY); the development mailbox may be empty",
            file=out,
        )
    mails = dev_mailbox.list_mail(settings)
    if args.verb == "list":
        if not mails:
            print(f"no mail in {folder}", file=out)
        for mail in mails:
            print(f"{mail.name}  {mail.date}  to {mail.to}  {mail.subject}", file=out)
        return 0
    name = mails[-1].name if args.name == "last" and mails else args.name
    try:
        mail = dev_mailbox.read_mail(settings, name)
    except FileNotFoundError:
        print(f"no mail {name!r} in {folder} (see `learnstream mail list`)", file=out)
        return EXIT_REFUSED
    print(f"To: {mail.to}\nDate: {mail.date}\nSubject: {mail.subject}\n\n{mail.body}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``learnstream`` command."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(run(args, get_settings()))


if __name__ == "__main__":
    sys.exit(main())

"""Secrets generated once per installation, kept under ``<data_dir>/secrets/`` (mode 0600).

Local and test runs need signing and encryption keys but must never share a public
default (anyone who read the source could forge tokens). When a secret is not set in
the environment, the first process that needs it generates 256 random bits and stores
them; every later process on the same data directory reads the same file.

Several processes (API workers, ingest, processors, test workers) may start at once on
one data directory, so creation is race-free: each candidate is written completely to
a private temporary file (``O_CREAT | O_EXCL``, mode 0600) and then published with
``link(2)``, which fails if the name exists. A loser discards its candidate and reads
the winner's file, so a reader never sees a half-written secret and all agree.

Production refuses to run on generated secrets (learnstream/settings.py): replicas on
several hosts would each generate their own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path

from learnstream.exceptions import ConfigurationError

SECRETS_SUBDIR = "secrets"
# 32 random bytes, base64url without padding: 43 characters.
_SECRET_BYTES = 32


# Cached per process: this sits on the path of every authenticated request.
@lru_cache(maxsize=32)
def installation_secret(data_dir: Path, name: str) -> str:
    """The secret ``name`` of this installation, created on first use (cached per process).

    ``name`` is a plain file name such as ``jwt_secret``. The value is 43 base64url
    characters (256 bits). ConfigurationError if the stored file is readable by group
    or others, or is not a secret this module wrote.
    """
    return read_or_create(secret_path(data_dir, name))


def secret_path(data_dir: Path, name: str) -> Path:
    """Where ``installation_secret(data_dir, name)`` keeps its value."""
    return data_dir / SECRETS_SUBDIR / name


def read_or_create(path: Path) -> str:
    """Read the secret at ``path``, creating it first if absent (uncached; see module doc)."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    candidate = secrets.token_urlsafe(_SECRET_BYTES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(candidate + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link(2) is atomic and exclusive: the first process wins; a later one finds the
        # name taken (FileExistsError) and reads the winner's secret below.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    with path.open() as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"{path} is readable by other users (mode {stat.filemode(mode)}); "
                f"run `chmod 600 {path}` or set the secret in the environment"
            )
        value = handle.read().strip()
    if len(value) < 43:
        raise ConfigurationError(
            f"{path} does not hold a generated secret ({len(value)} characters); "
            "delete it to generate a new one (signs everyone out) or restore it from backup"
        )
    return value

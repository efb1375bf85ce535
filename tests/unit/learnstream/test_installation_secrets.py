"""Per-installation secrets: generated once, mode 0600, the same for every process that
races to create them, and refused when other users can read them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from learnstream.exceptions import ConfigurationError
from learnstream.installation_secrets import installation_secret, read_or_create, secret_path
from learnstream.settings import REPO_ROOT

RACERS = 8


def test_secret_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = secret_path(tmp_path, "jwt_secret")
    first = read_or_create(path)
    assert len(first) >= 43
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o077 == 0
    assert read_or_create(path) == first
    assert installation_secret(tmp_path, "jwt_secret") == first
    assert read_or_create(secret_path(tmp_path, "other")) != first
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_threads_racing_to_create_agree_on_one_secret(tmp_path: Path) -> None:
    path = secret_path(tmp_path, "raced")
    barrier = threading.Barrier(RACERS)
    seen: list[str] = []

    def race() -> None:
        barrier.wait()
        seen.append(read_or_create(path))

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == RACERS
    assert len(set(seen)) == 1
    assert path.read_text().strip() == seen[0]


def test_processes_racing_to_create_agree_on_one_secret(tmp_path: Path) -> None:
    # Separate interpreters, started together, on one data directory (API workers,
    # ingest, processors): each prints what it read.
    path = secret_path(tmp_path, "raced")
    code = (
        "import sys; from pathlib import Path; "
        "from learnstream.installation_secrets import read_or_create; "
        "print(read_or_create(Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(4)
    ]
    outputs = {child.communicate(timeout=60)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert outputs == {path.read_text().strip()}


def test_a_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = secret_path(tmp_path, "leaky")
    read_or_create(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_or_create(path)


def test_a_truncated_secret_is_refused(tmp_path: Path) -> None:
    path = secret_path(tmp_path, "short")
    path.parent.mkdir(mode=0o700)
    path.write_text("abc\n")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="does not hold a generated secret"):
        read_or_create(path)

"""The committed generated event classes match what `make proto` produces from proto/."""

from __future__ import annotations

from pathlib import Path

from infra.gen_proto import REPO_ROOT, generate


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    generated = generate(tmp_path)
    assert generated, "protoc generated nothing"
    stale = [
        str(relative)
        for relative in generated
        if not (REPO_ROOT / relative).exists()
        or (REPO_ROOT / relative).read_bytes() != (tmp_path / relative).read_bytes()
    ]
    committed = {
        p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "learnstream/events").rglob("*.py*")
    }
    orphaned = sorted(str(p) for p in committed - set(generated) if "__pycache__" not in str(p))
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
    assert not orphaned, f"generated files without a .proto source: {orphaned}"


def test_every_enum_starts_with_unspecified() -> None:
    from learnstream.events.v1 import (
        activity_pb2,
        attempt_pb2,
        common_pb2,
        derived_pb2,
        ingest_pb2,
        notification_pb2,
        session_pb2,
    )

    for module in (
        activity_pb2,
        attempt_pb2,
        common_pb2,
        derived_pb2,
        ingest_pb2,
        notification_pb2,
        session_pb2,
    ):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values[0].number == 0
            assert enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name

"""Which strings may be learner ids (the ids client apps put in events)."""

from __future__ import annotations

import pytest

from api.services.learner_ids import learner_id_refusal


@pytest.mark.parametrize("learner_id", ["70363", "stu-42", "a@b.org", "x" * 200, "UPPER_lower.1"])
def test_app_ids_are_accepted(learner_id: str) -> None:
    assert learner_id_refusal(learner_id) is None


@pytest.mark.parametrize("learner_id", ["", "a b", "tab\tid", "x" * 201, "é", "nul\x00"])
def test_spaces_control_characters_and_long_ids_are_refused(learner_id: str) -> None:
    assert learner_id_refusal(learner_id) == "1 to 200 printable ASCII characters without spaces"

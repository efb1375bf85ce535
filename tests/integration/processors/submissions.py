"""Code submissions for the code-submissions tests: real-looking programs, some broken.

There is no public dataset of graded code submissions in ../shared/data, so the
programs are written here: several correct and incorrect solutions per exercise,
each using different constructs (loops, recursion, comprehensions, classes,
exceptions, generators), renamed and reformatted per learner; JavaScript ones get
the test signal only; and the corrupted kinds a client can send (a syntax error,
null bytes, nesting past the parser's limits).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from learnstream.events.v1 import code_submission_pb2, envelope_pb2
from learnstream.kafka import learner_key

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("3f2b8c1e-5d6a-4b7c-8e9f-0a1b2c3d4e5f")

# exercise -> (exercise skills, python solutions); {f} is the function name, {v} a variable.
PYTHON: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "factorial": (
        ("arithmetic",),
        (
            "def {f}(n):\n    if n <= 1:\n        return 1\n    return n * {f}(n - 1)\n",
            "def {f}(n):\n    {v} = 1\n    for i in range(2, n + 1):\n        {v} *= i\n"
            "    return {v}\n",
            "def {f}(n):\n    {v} = 1\n    while n > 1:\n        {v} *= n\n        n -= 1\n"
            "    return {v}\n",
        ),
    ),
    "evens": (
        ("lists",),
        (
            "def {f}(xs):\n    return [{v} for {v} in xs if {v} % 2 == 0]\n",
            "def {f}(xs):\n    out = []\n    for {v} in xs:\n        if {v} % 2 == 0:\n"
            "            out.append({v})\n    return out\n",
            "def {f}(xs):\n    for {v} in xs:\n        if {v} % 2 == 0:\n            yield {v}\n",
            "{f} = lambda xs: list(filter(lambda {v}: {v} % 2 == 0, xs))\n",
        ),
    ),
    "parse_int": (
        ("strings", "errors"),
        (
            "def {f}(text):\n    try:\n        return int(text)\n    except ValueError:\n"
            "        return None\n",
            "def {f}(text):\n"
            "    return int(text) if text.strip().lstrip('-').isdigit() else None\n",
        ),
    ),
    "stack": (
        ("data_structures",),
        (
            "class {F}:\n    def __init__(self):\n        self.{v} = []\n\n"
            "    def push(self, x):\n        self.{v}.append(x)\n\n"
            "    def pop(self):\n        if not self.{v}:\n            raise IndexError('empty')\n"
            "        return self.{v}.pop()\n",
        ),
    ),
}
JAVASCRIPT = (
    "function {f}(n) {{ return n <= 1 ? 1 : n * {f}(n - 1); }}",
    "const {f} = (xs) => xs.filter(({v}) => {v} % 2 === 0);",
)
BROKEN = (
    "def {f}(n)\n    return n\n",  # missing colon
    "def {f}(n):\n\treturn n\x00\n",  # null byte from a corrupted upload
    "x = " + "(" * 250 + "1" + ")" * 250 + "\n",  # nesting past the parser
    "def {f}(n):\n  if n:\n      return 1\n    return 2\n",  # inconsistent dedent
)


@dataclass(frozen=True, slots=True)
class SubmissionSpec:
    """One submission to produce."""

    event_id: str
    tenant_id: str
    user_id: str
    item_id: str
    skill_ids: tuple[str, ...]
    language: str
    source: str
    tests_passed: int
    tests_total: int
    occurred_at: datetime

    def key(self) -> bytes:
        return learner_key(self.tenant_id, self.user_id)

    def value(self) -> bytes:
        envelope = envelope_pb2.Envelope(
            event_id=self.event_id, tenant_id=self.tenant_id, user_id=self.user_id
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        return code_submission_pb2.CodeSubmissionEvent(
            envelope=envelope,
            item_id=self.item_id,
            item_version=1,
            skill_ids=self.skill_ids,
            language=self.language,
            source=self.source,
            tests_passed=self.tests_passed,
            tests_total=self.tests_total,
            runtime_ms=25,
        ).SerializeToString()


def submission(
    number: int,
    user: str,
    exercise: str,
    source: str,
    *,
    language: str = "python",
    passed: int = 5,
    total: int = 5,
    tenant: str = "school",
) -> SubmissionSpec:
    """One submission with a reproducible event_id."""
    skills = PYTHON[exercise][0] if exercise in PYTHON else ("programming",)
    return SubmissionSpec(
        event_id=str(uuid.uuid5(_NAMESPACE, f"{tenant}/{user}/{number}")),
        tenant_id=tenant,
        user_id=user,
        item_id=exercise,
        skill_ids=skills,
        language=language,
        source=source,
        tests_passed=passed,
        tests_total=total,
        occurred_at=T0 + timedelta(seconds=30 * number),
    )


def generate(count: int, *, learners: int, seed: int) -> list[SubmissionSpec]:
    """``count`` submissions of ``learners`` learners: mostly Python, some JS, some broken."""
    rng = random.Random(seed)
    specs = []
    for number in range(count):
        user = f"coder-{rng.randrange(learners)}"
        names = {"f": rng.choice(["solve", "answer", "f", "compute"]), "v": rng.choice("abxy")}
        names["F"] = names["f"].capitalize()
        roll = rng.random()
        total = rng.choice([3, 4, 5, 8])
        passed = rng.randint(0, total)
        if roll < 0.1:
            exercise, language = rng.choice(sorted(PYTHON)), "python"
            source, passed = rng.choice(BROKEN).format(**names), 0
        elif roll < 0.25:
            exercise, language = "js_exercise", "javascript"
            source = rng.choice(JAVASCRIPT).format(**names)
        else:
            exercise, language = rng.choice(sorted(PYTHON)), rng.choice(["python", "Python3"])
            source = rng.choice(PYTHON[exercise][1]).format(**names)
            if rng.random() < 0.3:
                source = f"# attempt by {user}\n\n{source}\n"  # comments and blank lines
        if roll > 0.97:
            passed, total = 0, 0  # an exercise without tests
        specs.append(
            submission(
                number, user, exercise, source, language=language, passed=passed, total=total
            )
        )
    return specs

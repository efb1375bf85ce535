"""Content kinds and statuses, and the payload schema of each kind (a question needs an
answer key, a code exercise at least one test, a video an http(s) URL ...)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)

from api.exceptions import (
    FieldProblem,
)

ITEM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class ContentKind(StrEnum):
    QUESTION = "question"
    CODE_EXERCISE = "code_exercise"
    LESSON = "lesson"
    READING = "reading"
    VIDEO = "video"


class ContentStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class QuestionPayload(_Payload):
    """A question; with ``choices`` every answer must be one of them."""

    prompt: str = Field(min_length=1, max_length=20_000)
    choices: list[Annotated[str, Field(min_length=1, max_length=2000)]] | None = Field(
        default=None, min_length=2, max_length=20
    )
    answer_key: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=20, description="accepted answers"
    )
    explanation: str = Field(default="", max_length=20_000)

    @model_validator(mode="after")
    def _answers_are_choices(self) -> QuestionPayload:
        if self.choices is not None:
            missing = [a for a in self.answer_key if a not in self.choices]
            if missing:
                raise ValueError(f"answer_key entries not among choices: {missing}")
        return self


class CodeTest(_Payload):
    name: str = Field(min_length=1, max_length=200)
    code: str = Field(min_length=1, max_length=50_000, description="test source")


class CodeExercisePayload(_Payload):
    """A programming task graded by its tests."""

    prompt: str = Field(min_length=1, max_length=20_000)
    language: Literal["python", "javascript", "java", "c", "cpp", "sql"]
    starter_code: str = Field(default="", max_length=50_000)
    tests: list[CodeTest] = Field(min_length=1, max_length=100)
    reference_solution: str = Field(default="", max_length=50_000)


class LessonPayload(_Payload):
    """A lesson or a reading: text to learn from."""

    body_markdown: str = Field(min_length=1, max_length=200_000)
    estimated_minutes: int = Field(default=5, ge=1, le=600)


class VideoPayload(_Payload):
    url: HttpUrl
    duration_s: int = Field(ge=1, le=24 * 3600)
    transcript: str = Field(default="", max_length=200_000)


PAYLOAD_MODELS: dict[ContentKind, type[_Payload]] = {
    ContentKind.QUESTION: QuestionPayload,
    ContentKind.CODE_EXERCISE: CodeExercisePayload,
    ContentKind.LESSON: LessonPayload,
    ContentKind.READING: LessonPayload,
    ContentKind.VIDEO: VideoPayload,
}


def validate_payload(
    kind: ContentKind, payload: Any, *, field_prefix: str = "body.payload"
) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    """The normalised payload for ``kind`` and no problems, or None and what is wrong."""
    try:
        model = PAYLOAD_MODELS[kind].model_validate(payload)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            field = f"{field_prefix}.{where}" if where else field_prefix
            problems.append(FieldProblem(field, str(error["msg"])))
        return None, problems
    return model.model_dump(mode="json"), []


def searchable_text(kind: ContentKind, payload: dict[str, Any]) -> str:
    """The words of a payload worth finding it by (prompt, body, transcript, ...)."""
    keys = {
        ContentKind.QUESTION: ("prompt", "explanation"),
        ContentKind.CODE_EXERCISE: ("prompt",),
        ContentKind.LESSON: ("body_markdown",),
        ContentKind.READING: ("body_markdown",),
        ContentKind.VIDEO: ("transcript",),
    }[kind]
    parts = [str(payload.get(key, "")) for key in keys]
    if kind is ContentKind.QUESTION and payload.get("choices"):
        parts.extend(payload["choices"])
    return "\n".join(parts)

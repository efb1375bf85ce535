"""Request and response bodies of the placement routes (api/routes/placement.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.services import placement
from api.services.mastery import MasteryLabel, mastery_label


class QuestionPublic(BaseModel):
    """A question to answer; the answer key stays on the server."""

    item_id: str
    version: int
    title: str
    prompt: str
    choices: list[str] | None = Field(description="answer with one of these when present")
    skill_ids: list[str]


class SkillEstimatePublic(BaseModel):
    skill_id: str
    p_mastery: float = Field(ge=0, le=1, description="starting mastery, in [0, 1]")
    label: MasteryLabel


class PlacementResultPublic(BaseModel):
    """The finished test and what it seeded."""

    ability: float = Field(description="EAP ability, logits")
    ability_se: float = Field(ge=0, description="posterior SD of ability, logits")
    items_administered: int
    correct: int
    stop_reason: str = Field(description="se_reached, max_items or bank_exhausted")
    skill_estimates: list[SkillEstimatePublic]
    seeded_skills: list[str] = Field(description="skills that got their first mastery row")
    learner_id: str = Field(description="the learner id the seeds were filed under")
    started_at: datetime
    completed_at: datetime
    event_published: bool = Field(description="PlacementEvent acknowledged by the broker")


class PlacementPublic(BaseModel):
    """A placement in progress (``question`` set) or finished (``result`` set)."""

    placement_id: str
    status: str = Field(description="in_progress or completed")
    answered: int
    max_items: int
    question: QuestionPublic | None
    result: PlacementResultPublic | None
    expires_at: datetime | None = Field(description="session expiry if left unanswered (UTC)")


class AnswerCreate(BaseModel):
    item_id: str = Field(min_length=1, max_length=100, description="the current question")
    response: str = Field(max_length=2000, description="the answer (a choice, or free text)")


def result_public(found: placement.PlacementResult) -> PlacementResultPublic:
    """The public shape of a finished placement."""
    # Estimates are starting points from the test, not practice: label them as if each
    # skill had been tried once, so "not started" never hides a real estimate.
    return PlacementResultPublic(
        ability=found.ability,
        ability_se=found.ability_se,
        items_administered=found.items_administered,
        correct=found.correct,
        stop_reason=found.stop_reason,
        skill_estimates=[
            SkillEstimatePublic(skill_id=skill, p_mastery=p, label=mastery_label(p, 1))
            for skill, p in sorted(found.skill_estimates.items())
        ],
        seeded_skills=list(found.seeded_skills),
        learner_id=found.learner_id,
        started_at=found.started_at,
        completed_at=found.completed_at,
        event_published=found.event_published,
    )


def placement_public(view: placement.PlacementView) -> PlacementPublic:
    """The public shape of a placement view."""
    result = None if view.result is None else result_public(view.result)
    question = None
    if view.question is not None:
        question = QuestionPublic(
            item_id=view.question.item_id,
            version=view.question.version,
            title=view.question.title,
            prompt=view.question.prompt,
            choices=list(view.question.choices) if view.question.choices else None,
            skill_ids=list(view.question.skill_ids),
        )
    return PlacementPublic(
        placement_id=view.placement_id,
        status="completed" if view.result is not None else "in_progress",
        answered=view.answered,
        max_items=view.max_items,
        question=question,
        result=result,
        expires_at=view.expires_at,
    )

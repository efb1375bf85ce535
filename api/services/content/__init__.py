"""Content items: kinds and their payloads, versions, the review workflow, search.

* :mod:`.kinds` — kinds, statuses and the payload schema of each kind;
* :mod:`.workflow` — the review workflow's moves and who may make them (pure);
* :mod:`.items` — reading items, versions and history as the caller may see them, search;
* :mod:`.editing` — creating, editing, rolling back and moving items.

The names routes, the importer, seeding and tests use are importable from here.
"""

from api.services.content.editing import (
    create_item,
    edit_item,
    rollback_item,
    transition_item,
)
from api.services.content.items import (
    LEARNER_HIDDEN_FIELDS,
    ContentItem,
    ContentVersion,
    SearchQuery,
    Transition,
    get_item,
    is_staff,
    learner_facing,
    search,
    transitions,
    versions,
)
from api.services.content.kinds import (
    ITEM_ID_PATTERN,
    CodeExercisePayload,
    CodeTest,
    ContentKind,
    ContentStatus,
    LessonPayload,
    QuestionPayload,
    VideoPayload,
    searchable_text,
    validate_payload,
)
from api.services.content.workflow import (
    EDITOR_ROLES,
    STAFF_ROLES,
    TRANSITIONS,
    status_after_edit,
    transition_refusal,
)

__all__ = [
    "EDITOR_ROLES",
    "ITEM_ID_PATTERN",
    "LEARNER_HIDDEN_FIELDS",
    "STAFF_ROLES",
    "TRANSITIONS",
    "CodeExercisePayload",
    "CodeTest",
    "ContentItem",
    "ContentKind",
    "ContentStatus",
    "ContentVersion",
    "LessonPayload",
    "QuestionPayload",
    "SearchQuery",
    "Transition",
    "VideoPayload",
    "create_item",
    "edit_item",
    "get_item",
    "is_staff",
    "learner_facing",
    "rollback_item",
    "search",
    "searchable_text",
    "status_after_edit",
    "transition_item",
    "transition_refusal",
    "transitions",
    "validate_payload",
    "versions",
]

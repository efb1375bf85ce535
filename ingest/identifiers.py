"""The identifiers of each event kind, found in the proto descriptors, for the rule that
every identifier must be printable (see :mod:`ingest.validation`, which applies it).

An identifier is every string field of every event kind, and every string map key,
except the free text in :data:`FREE_TEXT_FIELDS`. :data:`IDENTIFIER_FIELDS` lists them
per kind with their paths inside a ``LearningEvent``; :data:`JOINED_IDENTIFIERS` gives,
per kind, all of one event's identifiers as one string, so the common case (all
printable) costs one C-level ``str.isprintable``. Pure: nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from learnstream.events.v1 import ingest_pb2

# Kinds of event a LearningEvent can hold: the members of its "event" oneof, in order
# (the same as ingest.validation.EVENT_KINDS, which a unit test checks).
_EVENT_KINDS = tuple(
    field.name for field in ingest_pb2.LearningEvent.DESCRIPTOR.oneofs_by_name["event"].fields
)

# String fields that hold free text, where any character may appear: paths inside a
# LearningEvent. Every other string field (and every map key) is an identifier.
FREE_TEXT_FIELDS = frozenset({"attempt.response", "code_submission.source"})
# Said once in every answer that refuses an identifier's character.
IDENTIFIER_RULE = (
    "identifiers may hold printable characters only: no control (Cc), format (Cf), "
    "surrogate (Cs), private-use (Co), unassigned (Cn) or separator character but the space"
)


@dataclass(frozen=True, slots=True)
class IdentifierField:
    """One identifier of one event kind, found in the proto descriptors.

    ``path`` is its pattern inside a LearningEvent: ``attempt.envelope.user_id``;
    ``[]`` marks each element of a repeated field (``attempt.skill_ids[]``,
    ``placement.skill_estimates[].skill_id``) and ``{}`` each key of a map
    (``activity.attributes{}``). ``values`` gives its values in one event's body;
    ``located`` gives them with their concrete paths (``attempt.skill_ids[2]``).
    """

    kind: str
    path: str
    values: Callable[[Any], Iterable[str]]
    located: Callable[[Any], Iterator[tuple[str, str]]]
    # The dotted attribute of a plain string field (one value), else None.
    attribute: str | None = None


def _identifier_fields(kind: str, descriptor: Descriptor, outer: str = "") -> list[IdentifierField]:
    # ``outer``: the path of the repeated field whose element ``descriptor`` is, with
    # "[]", so FREE_TEXT_FIELDS can name a field inside such an element too.
    found: list[IdentifierField] = []

    def walk(message: Descriptor, names: tuple[str, ...]) -> None:
        for field in message.fields:
            here = (*names, field.name)
            path = (outer or kind) + "." + ".".join(here)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                inner = _message_type(field)
                if inner.GetOptions().map_entry:
                    if inner.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING:
                        found.append(_map_keys(kind, here))
                    continue
                if field.is_repeated:
                    for sub in _identifier_fields(kind, inner, f"{path}[]"):
                        found.append(_in_each(kind, here, sub, len(kind) + 1))
                    continue
                walk(inner, here)
            elif field.type == FieldDescriptor.TYPE_STRING and path not in FREE_TEXT_FIELDS:
                found.append(_repeated(kind, here) if field.is_repeated else _scalar(kind, here))

    walk(descriptor, ())
    return found


def _message_type(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return message


def _scalar(kind: str, names: tuple[str, ...]) -> IdentifierField:
    path = ".".join((kind, *names))
    get = attrgetter(".".join(names))
    return IdentifierField(
        kind,
        path,
        lambda body: (get(body),),
        lambda body: iter(((path, get(body)),)),
        ".".join(names),
    )


def _repeated(kind: str, names: tuple[str, ...]) -> IdentifierField:
    path = ".".join((kind, *names))
    get = attrgetter(".".join(names))
    return IdentifierField(
        kind,
        f"{path}[]",
        get,
        lambda body: ((f"{path}[{i}]", value) for i, value in enumerate(get(body))),
    )


def _map_keys(kind: str, names: tuple[str, ...]) -> IdentifierField:
    path = ".".join((kind, *names))
    get = attrgetter(".".join(names))
    return IdentifierField(
        kind,
        f"{path}{{}}",
        get,  # iterating a map gives its keys
        # The key is the path; escaped and shortened, so it cannot make the answer huge.
        lambda body: ((f'{path}["{ascii(key[:40])[1:-1]}"]', key) for key in sorted(get(body))),
    )


def _in_each(
    kind: str, names: tuple[str, ...], inner: IdentifierField, cut: int
) -> IdentifierField:
    # ``inner`` was found inside the element message, its path "kind.<sub path>".
    path = ".".join((kind, *names))
    get = attrgetter(".".join(names))
    sub = inner.path[cut:]

    def values(body: Any) -> Iterator[str]:
        for element in get(body):
            yield from inner.values(element)

    def located(body: Any) -> Iterator[tuple[str, str]]:
        for i, element in enumerate(get(body)):
            for inner_path, value in inner.located(element):
                yield f"{path}[{i}].{inner_path[cut:]}", value

    return IdentifierField(kind, f"{path}[].{sub}", values, located)


# Built once from the descriptors: a string field added to an event is covered at once.
IDENTIFIER_FIELDS: dict[str, tuple[IdentifierField, ...]] = {
    kind: tuple(
        _identifier_fields(
            kind, _message_type(ingest_pb2.LearningEvent.DESCRIPTOR.fields_by_name[kind])
        )
    )
    for kind in _EVENT_KINDS
}


def _joiner(fields: Sequence[IdentifierField]) -> Callable[[Any], str]:
    # All of one event's identifiers as one string, cheaply: each sub-message holding
    # plain fields (the body, its envelope, the envelope's source) is fetched once
    # and its fields read by one attrgetter call (a tuple built in C); repeated fields
    # and map keys are joined as they are.
    by_parent: dict[str, list[str]] = {}
    for field in fields:
        if field.attribute is not None:
            parent, _, leaf = field.attribute.rpartition(".")
            by_parent.setdefault(parent, []).append(leaf)
    groups = tuple(
        (attrgetter(parent) if parent else None, attrgetter(*leaves), len(leaves) == 1)
        for parent, leaves in by_parent.items()
    )
    many = tuple(f.values for f in fields if f.attribute is None)

    def joined(body: Any) -> str:
        parts: list[str] = []
        for get_parent, get_leaves, single in groups:
            message = body if get_parent is None else get_parent(body)
            values: Any = get_leaves(message)  # one str, or a tuple of them
            if single:
                parts.append(values)
            else:
                parts.extend(values)
        for values_of in many:
            parts.extend(values_of(body))
        return "".join(parts)

    return joined


# Per kind: the event body's identifiers joined into one string (see _joiner).
JOINED_IDENTIFIERS = {kind: _joiner(fields) for kind, fields in IDENTIFIER_FIELDS.items()}

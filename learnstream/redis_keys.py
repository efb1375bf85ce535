"""The one builder of Redis keys that carry ids: no id can reach into another key.

A key is ``<namespace>:<kind>:<id>:<id>...``. Every id component is percent-encoded
(:func:`urllib.parse.quote` with nothing safe), so an id never contains ``:``, ``%``,
``*``, ``?``, ``[`` or ``]``: the key of (tenant ``acme``, user ``x:globex:7``) is
``ns:learner:acme:x%3Aglobex%3A7`` and cannot equal, or be matched as, a key of tenant
``globex``. Ordinary ids (letters, digits, ``-``, ``_``, ``.``, ``~``; every UUID) are
unchanged, so existing keys keep their names.

The namespace (``redis_namespace``, trusted configuration) and the kind are written as
they are. Erasure deletes a learner's keys by their exact names
(:func:`learner_data_keys`), never by a glob pattern over user-supplied text.
"""

from __future__ import annotations

from urllib.parse import quote

# Kinds of keys holding one learner's data.
LEARNER_CACHE = "learner"  # processors.learner_cache: hash of mastery, ability, reviews
PLACEMENT = "placement"  # api.services.placement: the placement-test session
LEARNER_KINDS = (LEARNER_CACHE, PLACEMENT)


def component(value: str) -> str:
    """One id as it appears in a key: percent-encoded, never containing ``:``."""
    return quote(value, safe="")


def id_path(*ids: str) -> str:
    """Ids joined by ``:``, each percent-encoded: a key fragment no other ids can equal."""
    return ":".join(component(i) for i in ids)


def redis_key(namespace: str, kind: str, *ids: str) -> str:
    """``<namespace>:<kind>:<id>...`` with each id percent-encoded (:func:`component`)."""
    return ":".join((namespace, kind, *(component(i) for i in ids)))


def learner_data_keys(namespace: str, tenant_id: str, user_id: str) -> tuple[str, ...]:
    """The exact keys that can hold data of one learner (what export reads, erasure deletes)."""
    return tuple(redis_key(namespace, kind, tenant_id, user_id) for kind in LEARNER_KINDS)

"""One owning module per shared PostgreSQL view: row types, conversions, load/lock/write SQL.

The views are the contract between the processors (writers) and the read API; each
module here is the one place that knows a view's columns, so writers and readers
cannot drift apart. See docs/architecture.md, "Views and their owners".

* :mod:`.mastery`: ``skill_mastery`` and the raw ``attempts`` history;
* :mod:`.ability`: ``learner_ability`` (the stored posterior, ``DEFAULT_PRIOR``);
* :mod:`.reviews`: ``review_schedule`` and the tenant's scheduler choice;
* :mod:`.calibration`: ``bkt_parameters`` and ``irt_item_parameters``;
* :mod:`.concept_graph`: ``skill_prerequisites`` and ``concept_graph_versions``;
* :mod:`.fraud`: ``fraud_signals`` and the fraud processor's state tables;
* :mod:`.versioned`: the optimistic-version writer the versioned views share.

Modules here may import :mod:`scheduler` (pure types such as ``BKTParams``) and
:mod:`learnstream.db`, nothing of ``processors/``, ``api/`` or ``ml/``.
"""

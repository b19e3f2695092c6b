"""``armor_ab.stats`` is pure (``armor_ab/_layers.py``: it imports nothing else of armor_ab), so the SQL
keeps its own copy of what the experiment specs declare about capping; they must agree."""

from __future__ import annotations


def test_the_cappable_variables_agree_with_the_specs() -> None:
    from armor_ab.experiments.models import CAPPABLE, Capping
    from armor_ab.stats.sql import CAPPABLE as SQL_CAPPABLE
    from armor_ab.stats.sql import DEFAULT_CAPS

    assert SQL_CAPPABLE == CAPPABLE
    default = Capping()
    assert all((c.type, c.value) == (default.type, default.value) for c in DEFAULT_CAPS.values())

"""Variant-content helpers shared by ``test_content`` and ``test_content_on_demand``."""

from __future__ import annotations

from armor_ab.experiments.assignment import Assigner

EXP = "catalog-interleaved"
CHECKS = ("spec_fidelity", "terms", "modality", "image_sanity", "image_text", "text_hygiene")


def checks_policy(auto_approve: str | None = None, **on: str) -> str:
    """A ``content_checks:`` block (YAML, to append to an experiment file): every check ``off`` but those
    given (``terms='{action: block, blocked: ["pump"]}'``). Tests that are not about the guardrails
    turn them all off: armor-tiny's random weights write pages no real check passes."""
    fields = [f"auto_approve: {auto_approve}"] if auto_approve else []
    off = '{action: "off"}'  # quoted: YAML reads a bare off as false
    fields += [f"{name}: {on.get(name, off)}" for name in CHECKS]
    return "content_checks: {" + ", ".join(fields) + "}\n"


CHECKS_OFF = checks_policy()


def users_by_variant(spec) -> dict[str, str]:
    assigner = Assigner.from_experiment(spec)
    found: dict[str, str] = {}
    for i in range(1000):
        found.setdefault(assigner.assign(f"visitor-{i}").variant, f"visitor-{i}")
        if len(found) == 2:
            return found
    raise AssertionError("no split")


def stored_pages(db, experiment: str) -> dict:
    """item id -> the stored page (``ContentRow``) of each item of ``experiment`` in the DuckDB file ``db``."""
    from armor_ab.store.content import list_content
    from armor_ab.store.db import connect

    con = connect(db, read_only=True)
    try:
        return {row.item_id: row for row in list_content(con, experiment)}
    finally:
        con.close()

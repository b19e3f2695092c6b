"""Approving and rejecting generated content: one rule set for the API (a live server) and the CLI (a file).

A review names its content (one item, with or without a variant, or every item with ``all``; with
``verdict``, only pages the guardrails gave that verdict) and must match something stored; what
``…/content`` serves changes with the commit. Every review records who made it: the API key's name
and id, or the CLI's ``--reviewer`` and ``cli``.

A page that fails a blocking check (verdict ``fail``) is never approved: a review that names its
page is refused (409 ``guardrail_failed``, naming the checks) and changes nothing; a bulk approve
(``all``) skips such pages and says how many it skipped.
"""

from __future__ import annotations

import duckdb

from armor_ab.services.assignment import live_experiment
from armor_ab.services.errors import ServiceError
from armor_ab.services.state import AppState
from armor_ab.store.content import Reviewed, set_review
from armor_ab.store.experiments import get_experiment

CLI_KEY = "cli"  # reviewed_key of a review made from the command line


def check_target(item_id: str | None, all_: bool) -> None:
    if not (item_id or all_):
        raise ServiceError(422, "validation_error", "name the content: item_id, or all=true", field="item_id")


def nothing_matched(key: str, verdict: str | None = None) -> ServiceError:
    if verdict:
        return ServiceError(404, "content_not_found", f"no content of {key!r} with verdict {verdict!r} matched",
                            field="verdict")
    return ServiceError(404, "content_not_found",
                        f"no content of {key!r} matched (generate it first: armor-ab content generate --experiment {key})",
                        field="item_id")


def guardrail_failed(reviewed: Reviewed) -> ServiceError:
    """409: the page named fails a blocking check, so no one may approve it."""
    pages = "; ".join(r.describe() for r in reviewed.refused[:5])
    more = f" (and {len(reviewed.refused) - 5} more)" if len(reviewed.refused) > 5 else ""
    return ServiceError(
        409, "guardrail_failed",
        f"cannot approve a page that fails a blocking check: {pages}{more}; it is never served. Regenerate it, "
        "or change the experiment's content_checks and re-run the checks (armor-ab content check)",
        field="item_id")


def _outcome(key: str, reviewed: Reviewed, all_: bool, verdict: str | None) -> Reviewed:
    if reviewed.refused and not all_:
        raise guardrail_failed(reviewed)
    if reviewed.changed == 0 and not (reviewed.refused or reviewed.unchanged or reviewed.passed_over):
        raise nothing_matched(key, verdict)
    return reviewed


def review_by_key(
    con: duckdb.DuckDBPyConnection, key: str, status: str, key_id: str, *, item_id: str | None,
    variant: str | None, verdict: str | None, all_: bool,
) -> Reviewed:
    """``set_review`` recording the API key (its name, else its id, and its id) as the reviewer; runs on the
    database's writer thread, so the key's name is read in the same step."""
    row = con.execute("SELECT name FROM api_keys WHERE key_id = ?", [key_id]).fetchone()
    name = row[0] if row and row[0] else key_id
    return set_review(con, key, status, item_id=item_id, variant=variant, verdict=verdict, reviewed_by=name,
                      reviewed_key=key_id, all_or_nothing=not all_)


async def review_live(
    state: AppState, key: str, status: str, *, item_id: str | None, variant: str | None, all_: bool,
    key_id: str, verdict: str | None = None,
) -> Reviewed:
    """Review content of a served experiment through the server's database process, as the key
    ``key_id``; rows changed (with ``refused``: pages a bulk approve skipped)."""
    live_experiment(state, key)
    check_target(item_id, all_)
    reviewed = await state.write(review_by_key, key, status, key_id, item_id=item_id, variant=variant,
                                 verdict=verdict, all_=all_)
    return _outcome(key, reviewed, all_, verdict)


def review_stored(
    con: duckdb.DuckDBPyConnection, key: str, status: str, *, item_id: str | None, variant: str | None, all_: bool,
    reviewer: str, verdict: str | None = None,
) -> Reviewed:
    """Review content in a database file no server holds (the CLI), as ``reviewer`` (key ``cli``); rows
    changed (with ``refused``: pages a bulk approve skipped)."""
    check_target(item_id, all_)
    if get_experiment(con, key) is None:
        raise ServiceError(404, "experiment_not_found",
                           f"no experiment {key!r} (apply its YAML first: armor-ab experiment apply FILE)", field="key")
    reviewed = set_review(con, key, status, item_id=item_id, variant=variant, verdict=verdict, reviewed_by=reviewer,
                          reviewed_key=CLI_KEY, all_or_nothing=not all_)
    return _outcome(key, reviewed, all_, verdict)

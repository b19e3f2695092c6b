"""Approving and rejecting generated content: one rule set for the API (a live server) and the CLI (a file).

A review names its content (one item, with or without a variant, or every item with ``all``) and
must match something stored; what ``…/content`` serves changes with the commit.
"""

from __future__ import annotations

import duckdb

from armor_ab.services.assignment import live_experiment
from armor_ab.services.errors import ServiceError
from armor_ab.services.state import AppState
from armor_ab.store.content import set_review
from armor_ab.store.experiments import get_experiment


def check_target(item_id: str | None, all_: bool) -> None:
    if not (item_id or all_):
        raise ServiceError(422, "validation_error", "name the content: item_id, or all=true", field="item_id")


def nothing_matched(key: str) -> ServiceError:
    return ServiceError(404, "content_not_found",
                        f"no content of {key!r} matched (generate it first: armor-ab content generate --experiment {key})",
                        field="item_id")


async def review_live(
    state: AppState, key: str, status: str, *, item_id: str | None, variant: str | None, all_: bool,
) -> int:
    """Review content of a served experiment through the server's database process; rows changed."""
    live_experiment(state, key)
    check_target(item_id, all_)
    changed = await state.write(set_review, key, status, item_id=item_id, variant=variant)
    if changed == 0:
        raise nothing_matched(key)
    return changed


def review_stored(
    con: duckdb.DuckDBPyConnection, key: str, status: str, *, item_id: str | None, variant: str | None, all_: bool,
) -> int:
    """Review content in a database file no server holds (the CLI); rows changed."""
    check_target(item_id, all_)
    if get_experiment(con, key) is None:
        raise ServiceError(404, "experiment_not_found",
                           f"no experiment {key!r} (apply its YAML first: armor-ab experiment apply FILE)", field="key")
    changed = set_review(con, key, status, item_id=item_id, variant=variant)
    if changed == 0:
        raise nothing_matched(key)
    return changed

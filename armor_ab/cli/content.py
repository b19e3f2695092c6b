"""`armor-ab content ...`: generate each catalog item's ARMOR pages, review them, list them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from armor_ab.cli._common import DbOption, fail, open_db

if TYPE_CHECKING:
    import duckdb

    from armor_ab.catalog.items import CatalogItem

group = typer.Typer(help="Generate, approve and list the ARMOR variants' catalog content.", no_args_is_help=True)


def _record(con, key: str):
    from armor_ab.store.experiments import get_experiment

    rec = get_experiment(con, key)
    if rec is None:
        fail(f"no experiment {key!r} (apply its YAML first: armor-ab experiment apply FILE)")
    return rec


def select_items(con: duckdb.DuckDBPyConnection, selection: str | None, db: Path) -> list[CatalogItem]:
    """The catalog items ``--items`` names: comma-separated item ids and/or categories (every item when
    None), in catalog order; an unknown name, or a database without a catalog, is a clean error."""
    from armor_ab.store.catalog import list_items

    catalog = list_items(con)
    if not catalog:
        fail(f"no catalog in {db}: import one first with `armor-ab catalog import FILE --db {db}`")
    if selection is None:
        return catalog
    names = [n.strip() for n in selection.split(",") if n.strip()]
    if not names:
        fail("--items: give item ids and/or categories, comma-separated")
    ids = {item.id for item in catalog}
    categories = {item.category for item in catalog}
    unknown = [n for n in names if n not in ids and n not in categories]
    if unknown:
        fail(f"--items: no catalog item or category {', '.join(map(repr, unknown))} "
             f"(categories: {', '.join(sorted(categories))})")
    wanted = set(names)
    # A name that is both an id and a category selects both: the union, in catalog order.
    return [item for item in catalog if item.id in wanted or item.category in wanted]


class _OptionalRayAddress(TyperCommand):
    """``--ray [ADDRESS]``: a bare ``--ray`` (last, or before another option) reads as ``--ray=`` (no address)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        args = ["--ray=" if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
                for i, a in enumerate(args)]
        return super().parse_args(ctx, args)


@group.command("generate", cls=_OptionalRayAddress)
def generate(
    experiment: Annotated[str, typer.Option("--experiment", help="experiment key")],
    items: Annotated[str | None, typer.Option(
        "--items", help="comma-separated item ids and/or categories of the imported catalog (default: every item)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="model dir or name (default: the variant's)")] = None,
    backend: Annotated[str, typer.Option("--backend", help="torch | torch-cuda | onnxruntime | tensorrt")] = "torch",
    engine: Annotated[Path | None, typer.Option("--engine", help="built engine dir for onnxruntime/tensorrt")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=64)] = 4,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="[ADDRESS]", show_default=False,
        help="generate on a Ray cluster (the scale extra): --ray alone uses RAY_ADDRESS, a running local "
             "cluster or a new local one; --ray ADDRESS joins that cluster (auto, ray://head:10001)")] = None,
    ray_actors: Annotated[int | None, typer.Option(
        "--ray-actors", min=1, help="Ray actors, each with its own engine session (default: one per GPU for "
                                    "--backend torch-cuda/onnxruntime/tensorrt, else one per CPU)")] = None,
    db: DbOption = None,
) -> None:
    """Generate the missing pages of every ARMOR variant for the imported catalog's items (stored as
    pending; reruns skip what exists). With --ray, on a Ray cluster: the same pages (docs/scale.md)."""
    if ray_actors is not None and ray is None:
        fail("--ray-actors needs --ray")
    from armor_ab.config import resolve_db_path
    from armor_ab.content.generate import ContentError, generate_content
    from armor_ab.store.content import images_dir_for

    with open_db(db) as con:
        rec = _record(con, experiment)
        selected = select_items(con, items, resolve_db_path(db))
        try:
            if ray is None:
                report = generate_content(con, rec, selected, images_dir_for(resolve_db_path(db)),
                                          model=model, backend=backend, engine_dir=engine, batch_size=batch_size)
            else:
                from armor_ab.content.ray_generate import generate_content_ray

                report = generate_content_ray(con, rec, selected, images_dir_for(resolve_db_path(db)), model=model,
                                              backend=backend, engine_dir=engine, batch_size=batch_size,
                                              address=ray or None, actors=ray_actors)
        except ContentError as exc:
            fail(str(exc))
    typer.echo(f"{experiment}: {report.generated} generated, {report.skipped} already there "
               f"{report.by_variant or ''}".rstrip())
    if report.generated:
        typer.echo(f"checks: {report.checks_summary()}; {report.approved} approved by the guardrails")


def default_reviewer() -> str:
    """The OS user running the command (what a CLI review records when no --reviewer is given)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container without one)
        return "unknown"


def _review(key: str, status: str, item: str | None, variant: str | None, all_: bool, db: Path | None,
            reviewer: str | None, verdict: str | None = None) -> None:
    from armor_ab.services.errors import ServiceError
    from armor_ab.services.review import review_stored

    if not (item or all_):
        fail("name the content: --item ID, or --all")
    with open_db(db) as con:
        try:
            n = review_stored(con, key, status, item_id=item, variant=variant, all_=all_,
                              reviewer=reviewer or default_reviewer(), verdict=verdict)
        except ServiceError as exc:
            fail(exc.message)
    notes = []
    if n.refused:
        notes.append(f"{len(n.refused)} skipped: they fail a blocking check")
    if n.passed_over:
        notes.append(f"{n.passed_over} pending of another verdict left pending")
    if n.unchanged:
        notes.append(f"{n.unchanged} already reviewed, left as they were")
    typer.echo(f"{key}: {n.changed} {status}" + (f" ({'; '.join(notes)})" if notes else ""))


ItemOpt = Annotated[str | None, typer.Option("--item", help="one catalog item id")]
VariantOpt = Annotated[str | None, typer.Option("--variant", help="one variant")]
AllOpt = Annotated[bool, typer.Option("--all", help="every item")]
ReviewerOpt = Annotated[str | None, typer.Option(
    "--reviewer", help="who reviews, recorded with the review (default: the OS user)")]


@group.command("approve")
def approve(key: str, item: ItemOpt = None, variant: VariantOpt = None, all_: AllOpt = False,
            passing: Annotated[bool, typer.Option(
                "--passing", help="approve every page whose checks all passed (verdict pass)")] = False,
            reviewer: ReviewerOpt = None, db: DbOption = None) -> None:
    """Approve generated content so the API serves it. A page that fails a blocking check cannot be
    approved (--all skips such pages and says how many)."""
    if passing and item:
        fail("--passing approves every passing page: leave out --item")
    _review(key, "approved", item, variant, all_ or passing, db, reviewer, "pass" if passing else None)


@group.command("reject")
def reject(key: str, item: ItemOpt = None, variant: VariantOpt = None, all_: AllOpt = False,
           reviewer: ReviewerOpt = None, db: DbOption = None) -> None:
    """Reject generated content; visitors of that variant see the control copy instead."""
    _review(key, "rejected", item, variant, all_, db, reviewer)


@group.command("list")
def list_(key: str, status: Annotated[str | None, typer.Option("--status")] = None,
          verdict: Annotated[str | None, typer.Option("--verdict", help="pass | warn | fail")] = None,
          db: DbOption = None) -> None:
    """Stored content of an experiment with its review status, the guardrails' verdict and the checks
    that did not pass (``-`` when never checked)."""
    from armor_ab.store.content import VERDICTS, list_content

    if verdict is not None and verdict not in VERDICTS:
        fail(f"--verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    with open_db(db) as con:
        _record(con, key)
        for row in list_content(con, key, status=status, verdict=verdict):
            first = next((s["text"] for s in row.content["segments"] if s["type"] == "text"), "")
            images = sum(s["type"] == "image" for s in row.content["segments"])
            failing = ",".join(row.failing()) or "-"
            typer.echo(f"{row.item_id}\t{row.variant}\t{row.status}\t{row.verdict or '-'}\t{failing}\t"
                       f"{images} image(s)\t{first[:60]!r}")


@group.command("check")
def check(
    key: str,
    model: Annotated[str | None, typer.Option("--model", help="model dir or name (default: the variant's)")] = None,
    backend: Annotated[str, typer.Option("--backend", help="torch | torch-cuda | onnxruntime | tensorrt")] = "torch",
    engine: Annotated[Path | None, typer.Option("--engine", help="built engine dir for onnxruntime/tensorrt")] = None,
    variant: VariantOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the counts as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Re-run the guardrails on every stored page of the experiment (stale ones aside) under its current
    content_checks policy, and record each page's checks and verdict. A pending page that now passes is
    approved when the policy auto-approves; an approved page that now fails a blocking check stays
    approved but is no longer served."""
    import json

    from armor_ab.config import resolve_db_path
    from armor_ab.content.check import check_content
    from armor_ab.content.generate import ContentError
    from armor_ab.store.content import images_dir_for

    with open_db(db) as con:
        rec = _record(con, key)
        try:
            report = check_content(con, rec, images_dir_for(resolve_db_path(db)), model=model, backend=backend,
                                   engine_dir=engine, variant=variant)
        except ContentError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    typer.echo(f"{key}: {report.checked} checked: {report.summary() or 'nothing to check'}")
    if report.changed or report.approved or report.unknown_items:
        typer.echo(f"{report.changed} verdict(s) changed, {report.approved} approved by the guardrails, "
                   f"{report.unknown_items} page(s) of items no longer in the catalog left as they were")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="content")

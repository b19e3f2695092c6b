"""`armor-ab catalog import|list|show`: bring your own catalog (CSV, JSON lines or Parquet) into the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail, open_db

group = typer.Typer(help="Import, list and show the catalog items pages are made for.", no_args_is_help=True)


@group.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="catalog file: .csv, .jsonl/.ndjson or .parquet")],
    images: Annotated[Path | None, typer.Option(
        "--images", help="where the image column's paths start (default: the file's directory)")] = None,
    db: DbOption = None,
) -> None:
    """Check every row, then store the photos and items (all or nothing); changed items' pages go stale."""
    from armor_ab.catalog.importer import CatalogFileError
    from armor_ab.config import resolve_db_path
    from armor_ab.services.catalog_import import import_catalog
    from armor_ab.store.content import images_dir_for

    with open_db(db) as con:
        try:
            report = import_catalog(con, file, images, images_dir_for(resolve_db_path(db)))
        except CatalogFileError as exc:
            fail(str(exc), code=1)
    typer.echo(f"{file}: {report.items} items: {len(report.added)} added, {len(report.changed)} changed, "
               f"{report.unchanged} unchanged; {len(report.absent)} stored items not in the file (kept)")
    if report.changed:
        typer.echo(f"changed: {', '.join(report.changed)}")
        typer.echo(f"{report.stale_pages} generated pages of changed items are stale: not served until "
                   "regenerated (armor-ab content generate) or approved again (armor-ab content approve)")
    if report.absent:
        typer.echo(f"not in the file: {', '.join(report.absent)}")


@group.command("list")
def list_(
    category: Annotated[str | None, typer.Option("--category", help="only this category")] = None,
    db: DbOption = None,
) -> None:
    """Every item in catalog order: id, category, name, number of specs, whether it has a photo."""
    from armor_ab.store.catalog import list_items

    with open_db(db) as con:  # writable: an older database gains the catalog tables on open
        items = list_items(con, category=category)
    if not items:
        typer.echo("no items" + (f" in category {category!r}" if category else "") +
                   " (import a catalog: armor-ab catalog import FILE)", err=True)
        return
    rows = [("id", "category", "name", "specs", "photo")]
    rows += [(i.id, i.category, i.name, str(len(i.specs)), "yes" if i.image else "no") for i in items]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])


@group.command("show")
def show(item_id: Annotated[str, typer.Argument(help="the item's id")], db: DbOption = None) -> None:
    """One item, every field, as JSON; the photo by its SHA-256 and its file in the database's image store."""
    from armor_ab.config import resolve_db_path
    from armor_ab.store.catalog import get_item, image_path
    from armor_ab.store.content import images_dir_for

    with open_db(db) as con:
        item = get_item(con, item_id)
    if item is None:
        fail(f"no catalog item {item_id!r} (armor-ab catalog list shows them)", code=1)
    out = item.to_json()
    if item.image and item.image_type:
        out["image_file"] = str(image_path(images_dir_for(resolve_db_path(db)), item.image, item.image_type))
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="catalog")

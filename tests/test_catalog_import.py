"""Bring your own catalog: ``armor-ab catalog import`` reads CSV, JSON lines and Parquet, stores photos
content-addressed beside the database, is all or nothing with errors naming file, row and column, and a
re-import that changes an item makes its generated pages stale until they are regenerated or approved."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from armor_ab.assets import DEMO_CATALOG
from armor_ab.catalog.build import CSV_FILE, DEFAULT_SEED, build_catalog
from armor_ab.catalog.demo import demo_items
from armor_ab.catalog.importer import MAX_IMAGE_BYTES, CatalogFileError, parse_catalog
from armor_ab.cli import app
from armor_ab.model.interleaved import ContentMetadata, InterleavedContent, TextSegment
from armor_ab.services.catalog_import import import_catalog
from armor_ab.store.catalog import count_items, get_item, list_items
from armor_ab.store.content import approved, exists, images_dir_for, list_content, save_generated, set_review
from armor_ab.store.db import connect

EXP = "catalog-interleaved"
HEADER = ["id", "name", "category", "description", "spec_power", "spec_flow", "price_band", "image"]


def png(colour: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(colour: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A manufacturer's photo folder: a PNG and a JPEG in sub-folders."""
    root = tmp_path / "photos"
    (root / "pumps").mkdir(parents=True)
    (root / "valves").mkdir()
    (root / "pumps" / "p1.png").write_bytes(png())
    (root / "valves" / "v1.jpg").write_bytes(jpeg())
    return root


def good_rows() -> list[list[str]]:
    return [
        ["pumps-01", "Pump P-01", "pumps", "Centrifugal pump for clean water.", "5.5 kW", "120 m3/h", "mid",
         "pumps/p1.png"],
        ["valves-01", "Valve V-01", "valves", "Gate valve, DN50.", "", "", "low", "valves/v1.jpg"],
        ["pumps-02", "Pump P-02", "pumps", "Inline pump.", "2.2 kW", "", "", ""],
    ]


def stored_files(db_path: Path) -> set[str]:
    store = images_dir_for(db_path)
    return {p.name for p in store.iterdir()} if store.exists() else set()


def catalog_rows(db_path: Path) -> tuple[list, int]:
    con = connect(db_path)
    try:
        items = con.execute("SELECT * EXCLUDE (imported_at, updated_at) FROM catalog_items ORDER BY id").fetchall()
        return items, con.execute("SELECT count(*) FROM catalog_imports").fetchone()[0]
    finally:
        con.close()


def do_import(db_path: Path, path: Path, images: Path | None):
    con = connect(db_path)
    try:
        return import_catalog(con, path, images, images_dir_for(db_path))
    finally:
        con.close()


# --- good files -----------------------------------------------------------------------------------


def test_a_csv_catalog_with_png_and_jpeg_photos_imports_and_reads_back(tmp_path: Path, photos: Path,
                                                                       db_path: Path) -> None:
    path = write_csv(tmp_path / "catalog.csv", HEADER, good_rows())
    report = do_import(db_path, path, photos)
    assert (report.file, report.items, report.added, report.changed) == (
        "catalog.csv", 3, ["pumps-01", "valves-01", "pumps-02"], [])
    assert (report.unchanged, report.absent, report.stale_pages) == (0, [], 0)

    con = connect(db_path)
    try:
        assert [i.id for i in list_items(con)] == ["pumps-01", "valves-01", "pumps-02"]  # the file's order
        assert [i.id for i in list_items(con, category="pumps")] == ["pumps-01", "pumps-02"]
        assert count_items(con) == 3 and count_items(con, category="valves") == 1
        pump = get_item(con, "pumps-01")
        assert pump is not None and pump.name == "Pump P-01" and pump.description.startswith("Centrifugal")
        assert list(pump.specs.items()) == [("power", "5.5 kW"), ("flow", "120 m3/h")]  # in column order
        assert pump.fields == {"price_band": "mid"}
        assert (pump.image, pump.image_type) == (hashlib.sha256(png()).hexdigest(), "image/png")
        valve = get_item(con, "valves-01")
        assert valve.specs == {}  # empty spec cells are no specs
        assert (valve.image, valve.image_type) == (hashlib.sha256(jpeg()).hexdigest(), "image/jpeg")
        plain = get_item(con, "pumps-02")
        assert (plain.image, plain.image_type, plain.fields, plain.specs) == (None, None, {}, {"power": "2.2 kW"})
        assert get_item(con, "nope") is None
        assert con.execute("SELECT file, items, added FROM catalog_imports").fetchall() == [("catalog.csv", 3, 3)]
    finally:
        con.close()
    # Photos live beside the database under their SHA-256, byte for byte.
    store = images_dir_for(db_path)
    assert store == db_path.parent / "images"
    assert (store / f"{pump.image}.png").read_bytes() == png()
    assert (store / f"{valve.image}.jpg").read_bytes() == jpeg()
    assert stored_files(db_path) == {f"{pump.image}.png", f"{valve.image}.jpg"}


@pytest.mark.parametrize("specs_as", ["struct", "map", "json text"])
def test_a_parquet_catalog_imports_specs_from_one_column(tmp_path: Path, photos: Path, db_path: Path,
                                                         specs_as: str) -> None:
    specs = [{"power": "5.5 kW", "flow": "120 m3/h"}, {"power": None, "flow": "40 m3/h"}]
    if specs_as == "struct":
        column = pa.array(specs)
    elif specs_as == "map":
        column = pa.array([[(k, v) for k, v in s.items()] for s in specs], type=pa.map_(pa.string(), pa.string()))
    else:
        column = pa.array([json.dumps(s) for s in specs])
    table = pa.table({
        "id": ["pumps-01", "valves-01"], "name": ["Pump P-01", "Valve V-01"], "category": ["pumps", "valves"],
        "description": ["A pump.", "A valve."], "specs": column, "stock": [12, 3], "weight_kg": [4.5, 1.25],
        "image": ["pumps/p1.png", "valves/v1.jpg"],
    })
    path = tmp_path / "catalog.parquet"
    pq.write_table(table, path)
    report = do_import(db_path, path, photos)
    assert report.added == ["pumps-01", "valves-01"]
    con = connect(db_path)
    try:
        pump, valve = list_items(con)
    finally:
        con.close()
    assert list(pump.specs.items()) == [("power", "5.5 kW"), ("flow", "120 m3/h")]
    assert valve.specs == {"flow": "40 m3/h"}  # a null spec is no spec
    assert pump.fields == {"stock": "12", "weight_kg": "4.5"} and valve.fields == {"stock": "3", "weight_kg": "1.25"}
    assert (pump.image_type, valve.image_type) == ("image/png", "image/jpeg")
    assert stored_files(db_path) == {f"{pump.image}.png", f"{valve.image}.jpg"}


def test_a_json_lines_catalog_imports(tmp_path: Path, photos: Path, db_path: Path) -> None:
    lines = [
        {"id": "pumps-01", "name": "Pump P-01", "category": "pumps", "description": "A pump.",
         "specs": {"power": "5.5 kW", "flow": 120}, "image": "pumps/p1.png"},
        {"id": "valves-01", "name": "Valve V-01", "category": "valves", "description": "A valve.", "rated": True},
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert do_import(db_path, path, photos).added == ["pumps-01", "valves-01"]
    con = connect(db_path)
    try:
        assert get_item(con, "pumps-01").specs == {"power": "5.5 kW", "flow": "120"}  # scalars as text
        assert get_item(con, "valves-01").fields == {"rated": "true"}
    finally:
        con.close()


def test_image_paths_start_at_the_catalog_files_directory_by_default(tmp_path: Path, db_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png("red"))
    path = write_csv(tmp_path / "catalog.csv", ["id", "name", "category", "description", "image"],
                     [["a-1", "A", "misc", "An a.", "pics/a.png"]])
    parsed = parse_catalog(path)
    assert parsed.items[0].image == hashlib.sha256(png("red")).hexdigest()


# --- bad files: the error names file, row and column, and nothing is written ----------------------


def _sixty_five_specs(tmp_path: Path, photos: Path) -> tuple[Path, Path]:
    labels = [f"s{i}" for i in range(65)]
    header = ["id", "name", "category", "description", *(f"spec_{label}" for label in labels)]
    return write_csv(tmp_path / "catalog.csv", header, [["a-1", "A", "misc", "An a.", *["1"] * 65]]), photos


def _specs_object(specs: dict) -> list[list[str]]:
    return [["a-1", "A", "misc", "An a.", "{}"], ["a-2", "B", "misc", "A b.", json.dumps(specs)]]


def _case(tmp_path: Path, photos: Path, case: str) -> tuple[Path, Path]:
    """A bad catalog file (with its images directory) for each fault."""
    rows = good_rows()
    header = list(HEADER)
    if case == "duplicate id":
        rows[2][0] = "pumps-01"
    elif case == "missing image file":
        rows[1][-1] = "valves/v9.jpg"
    elif case == "unreadable image":
        (photos / "valves" / "broken.jpg").write_bytes(b"this is not a picture")
        rows[1][-1] = "valves/broken.jpg"
    elif case == "truncated image":
        (photos / "valves" / "cut.png").write_bytes(png()[:-30])
        rows[1][-1] = "valves/cut.png"
    elif case == "truncated jpeg":  # passes Pillow's verify (a no-op for JPEG): only decoding finds it
        data = jpeg()
        (photos / "valves" / "cut.jpg").write_bytes(data[:-10])  # the end of the scan and the end marker
        rows[1][-1] = "valves/cut.jpg"
    elif case == "gif image":
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, format="GIF")
        (photos / "valves" / "v.gif").write_bytes(buffer.getvalue())
        rows[1][-1] = "valves/v.gif"
    elif case == "image over 20 MB":
        with (photos / "valves" / "huge.png").open("wb") as fh:
            fh.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no 20 MB written
        rows[1][-1] = "valves/huge.png"
    elif case == "path escaping --images":
        (photos.parent / "secret.png").write_bytes(png())
        rows[1][-1] = "../secret.png"
    elif case == "absolute image path":
        rows[1][-1] = str(photos / "valves" / "v1.jpg")
    elif case == "link out of --images":
        (photos.parent / "secret.png").write_bytes(png())
        os.symlink(photos.parent / "secret.png", photos / "valves" / "link.png")
        rows[1][-1] = "valves/link.png"
    elif case == "empty name":
        rows[1][1] = "  "
    elif case == "empty category":
        rows[2][2] = ""
    elif case == "bad id":
        rows[1][0] = "valves 01"
    elif case == "more than 64 specs":
        return _sixty_five_specs(tmp_path, photos)
    elif case == "more than 64 specs in a specs column":
        header = ["id", "name", "category", "description", "specs"]
        return write_csv(tmp_path / "catalog.csv", header,
                         _specs_object({f"s{i}": str(i) for i in range(65)})), photos
    elif case == "bad spec label in a specs column":
        header = ["id", "name", "category", "description", "specs"]
        return write_csv(tmp_path / "catalog.csv", header, _specs_object({"max flow": "3"})), photos
    elif case == "specs column not an object":
        header = ["id", "name", "category", "description", "specs"]
        return write_csv(tmp_path / "catalog.csv", header, [["a-1", "A", "misc", "An a.", "[1, 2]"]]), photos
    elif case == "short row":
        rows[1] = rows[1][:-2]
    return write_csv(tmp_path / "catalog.csv", header, rows), photos


# case -> (row, column, what the message says)
BAD_ROWS = {
    "duplicate id": (3, "id", "duplicate id 'pumps-01' (also row 1)"),
    "missing image file": (2, "image", "file valves/v9.jpg not found under {images}/"),
    "unreadable image": (2, "image", "unreadable image valves/broken.jpg"),
    "truncated image": (2, "image", "unreadable image valves/cut.png"),
    "truncated jpeg": (2, "image", "unreadable image valves/cut.jpg"),
    "gif image": (2, "image", "unreadable image valves/v.gif (expected a PNG, JPEG or WebP file)"),
    "image over 20 MB": (2, "image", f"file valves/huge.png is {MAX_IMAGE_BYTES + 1} bytes, more than 20 MB"),
    "path escaping --images": (2, "image", "../secret.png is outside {images}/"),
    "absolute image path": (2, "image", "is an absolute path"),
    "link out of --images": (2, "image", "valves/link.png is outside {images}/"),
    "empty name": (2, "name", "the name is empty"),
    "empty category": (3, "category", "the category is empty"),
    "bad id": (2, "id", "'valves 01' is not an id"),
    "more than 64 specs": (1, "spec_s64", "more than 64 specs"),
    "more than 64 specs in a specs column": (2, "specs", "more than 64 specs"),
    "bad spec label in a specs column": (2, "specs", "spec label 'max flow' is not a template name"),
    "specs column not an object": (1, "specs", "expected a JSON object"),
    "short row": (2, None, "6 cells, but the header has 8 columns"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_row_names_file_row_and_column_and_nothing_is_written(tmp_path: Path, photos: Path, db_path: Path,
                                                                     case: str) -> None:
    # A database that already holds a catalog: a failed import must leave it exactly as it was.
    (tmp_path / "before").mkdir()
    earlier = write_csv(tmp_path / "before" / "earlier.csv", HEADER, [good_rows()[0]])
    do_import(db_path, earlier, photos)
    before_rows, before_files = catalog_rows(db_path), stored_files(db_path)

    path, images = _case(tmp_path, photos, case)
    row, column, says = BAD_ROWS[case]
    with pytest.raises(CatalogFileError) as info:
        do_import(db_path, path, images)
    where = f"{path}: row {row}: " + (f"column '{column}': " if column else "")
    assert str(info.value).startswith(where), str(info.value)
    assert says.format(images=images) in str(info.value)
    assert (info.value.row, info.value.column) == (row, column)
    assert catalog_rows(db_path) == before_rows  # no item added or changed, no import recorded
    assert stored_files(db_path) == before_files  # no photo of the bad file stored


@pytest.mark.parametrize(("header", "column", "says"), [
    (["id", "name", "category", "image"], "description", "missing column (required: id, name, category, description)"),
    (["id", "name", "category", "description", "spec_max-flow"], "spec_max-flow",
     "spec label 'max-flow' is not a template name"),
    (["id", "name", "category", "description", "list price"], "list price", "column name 'list price' is not"),
    (["id", "name", "category", "description", "specs", "spec_power"], "specs", "not both"),
    (["id", "name", "name", "category", "description"], "name", "the column appears twice"),
])
def test_a_bad_header_names_file_and_column(tmp_path: Path, photos: Path, db_path: Path, header: list[str],
                                            column: str, says: str) -> None:
    path = write_csv(tmp_path / "catalog.csv", header, [["x"] * len(header)])
    with pytest.raises(CatalogFileError) as info:
        do_import(db_path, path, photos)
    assert str(info.value).startswith(f"{path}: column '{column}': "), str(info.value)
    assert says in str(info.value) and info.value.row is None
    assert catalog_rows(db_path) == ([], 0) and stored_files(db_path) == set()


def test_a_bad_json_line_and_a_bad_file_are_named(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text('{"id": "a-1", "name": "A", "category": "c", "description": ""}\n\n{"id": "a-2", \n')
    with pytest.raises(CatalogFileError, match=rf"^{re.escape(str(path))}: row 3: invalid JSON"):
        do_import(db_path, path, None)
    path.write_text('{"id": "a-1", "name": "A", "category": "c"}\n')
    with pytest.raises(CatalogFileError, match=rf"^{re.escape(str(path))}: row 1: column 'description': missing"):
        do_import(db_path, path, None)
    other = tmp_path / "catalog.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(CatalogFileError, match="expected a .csv, .jsonl/.ndjson or .parquet file"):
        do_import(db_path, other, None)
    empty = write_csv(tmp_path / "empty.csv", ["id", "name", "category", "description"], [])
    with pytest.raises(CatalogFileError, match="no items"):
        do_import(db_path, empty, None)
    assert catalog_rows(db_path) == ([], 0)


# --- re-import: what changed, and stale pages -----------------------------------------------------


def page(item_id: str) -> InterleavedContent:
    return InterleavedContent([TextSegment(f"About {item_id}.")],
                              ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt=f"Describe {item_id}"))


def test_reimport_reports_changes_and_makes_the_changed_items_pages_stale(tmp_path: Path, photos: Path,
                                                                         db_path: Path) -> None:
    path = write_csv(tmp_path / "catalog.csv", HEADER, good_rows())
    do_import(db_path, path, photos)
    con = connect(db_path)
    try:
        for item in ("pumps-01", "valves-01"):
            save_generated(con, images_dir_for(db_path), EXP, "armor", item, page(item), f"Describe {item}")
        set_review(con, EXP, "approved", item_id="pumps-01")
        set_review(con, EXP, "approved", item_id="valves-01")
        assert set(approved(con)) == {(EXP, "armor", "pumps-01"), (EXP, "armor", "valves-01")}
    finally:
        con.close()

    # The same file again: nothing changes, nothing goes stale.
    same = do_import(db_path, path, photos)
    assert (same.added, same.changed, same.unchanged, same.stale_pages) == ([], [], 3, 0)

    rows = good_rows()
    rows[0][4] = "7.5 kW"  # pumps-01's power changed
    rows.pop(2)  # pumps-02 is not in the file any more
    changed_file = write_csv(tmp_path / "catalog-v2.csv", HEADER, rows)
    report = do_import(db_path, changed_file, photos)
    assert (report.added, report.changed, report.unchanged) == ([], ["pumps-01"], 1)
    assert (report.absent, report.stale_pages) == (["pumps-02"], 1)

    con = connect(db_path)
    try:
        assert get_item(con, "pumps-01").specs["power"] == "7.5 kW"
        assert get_item(con, "pumps-02") is not None  # an absent item is kept
        assert con.execute("SELECT count(*) FROM catalog_imports").fetchone()[0] == 3
        # The changed item's page is stale: not served, and generation sees it as missing.
        assert set(approved(con)) == {(EXP, "armor", "valves-01")}
        assert [r.status for r in list_content(con, EXP, item_id="pumps-01")] == ["stale"]
        assert [r.item_id for r in list_content(con, EXP, status="stale")] == ["pumps-01"]
        assert not exists(con, EXP, "armor", "pumps-01") and exists(con, EXP, "armor", "valves-01")
        # Approved again as it is: served again.
        assert set_review(con, EXP, "approved", item_id="pumps-01").changed == 1
        assert (EXP, "armor", "pumps-01") in approved(con)
    finally:
        con.close()

    rows[0][4] = "11 kW"  # changed again: stale again
    do_import(db_path, write_csv(tmp_path / "catalog-v3.csv", HEADER, rows), photos)
    con = connect(db_path)
    try:
        assert (EXP, "armor", "pumps-01") not in approved(con)
        # On-demand generation (replace=False) writes over a stale page, never over a current one.
        assert save_generated(con, images_dir_for(db_path), EXP, "armor", "pumps-01", page("pumps-01"),
                              "Describe pumps-01", replace=False) is not None
        assert [r.status for r in list_content(con, EXP, item_id="pumps-01")] == ["pending"]
        assert save_generated(con, images_dir_for(db_path), EXP, "armor", "valves-01", page("valves-01"),
                              "Describe valves-01", replace=False) is None
    finally:
        con.close()


# --- the demo catalog as a file -------------------------------------------------------------------


def test_the_demo_catalog_csv_imports_as_the_demo_items(db_path: Path) -> None:
    expected = [item for item, _ in demo_items()]
    parsed = parse_catalog(DEMO_CATALOG / CSV_FILE, DEMO_CATALOG)
    assert parsed.items == expected
    assert [i.digest() for i in parsed.items] == [i.digest() for i in expected]  # spec order too
    report = do_import(db_path, DEMO_CATALOG / CSV_FILE, DEMO_CATALOG)
    assert len(report.added) == len(expected) >= 40
    con = connect(db_path)
    try:
        assert [i.digest() for i in list_items(con)] == [i.digest() for i in expected]
    finally:
        con.close()
    for item, photo in demo_items():
        assert (images_dir_for(db_path) / f"{item.image}.png").read_bytes() == photo


def test_rebuilding_the_demo_catalog_rewrites_the_csv_byte_for_byte(tmp_path: Path) -> None:
    build_catalog(tmp_path, DEFAULT_SEED)
    assert (tmp_path / CSV_FILE).read_bytes() == (DEMO_CATALOG / CSV_FILE).read_bytes()


# --- the command line -----------------------------------------------------------------------------


def test_cli_import_list_show_and_an_error_exit(tmp_path: Path, photos: Path, db_path: Path) -> None:
    runner = CliRunner()
    path = write_csv(tmp_path / "catalog.csv", HEADER, good_rows())
    result = runner.invoke(app, ["catalog", "import", str(path), "--images", str(photos), "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "3 items: 3 added, 0 changed, 0 unchanged" in result.output

    listed = runner.invoke(app, ["catalog", "list", "--db", str(db_path)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["id", "category", "name", "specs", "photo"]
    assert [line.split()[0] for line in lines[1:]] == ["pumps-01", "valves-01", "pumps-02"]
    assert lines[1].split()[-2:] == ["2", "yes"] and lines[3].split()[-2:] == ["1", "no"]
    pumps = runner.invoke(app, ["catalog", "list", "--category", "valves", "--db", str(db_path)])
    assert [line.split()[0] for line in pumps.output.splitlines()[1:]] == ["valves-01"]

    shown = runner.invoke(app, ["catalog", "show", "pumps-01", "--db", str(db_path)])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["specs"] == {"power": "5.5 kW", "flow": "120 m3/h"} and data["fields"] == {"price_band": "mid"}
    assert Path(data["image_file"]).read_bytes() == png()
    missing = runner.invoke(app, ["catalog", "show", "nope", "--db", str(db_path)])
    assert missing.exit_code == 1 and "no catalog item 'nope'" in missing.output

    rows = good_rows()
    rows[0][4] = "7.5 kW"
    changed = runner.invoke(app, ["catalog", "import", str(write_csv(path, HEADER, rows)), "--images", str(photos),
                                  "--db", str(db_path)])
    assert changed.exit_code == 0, changed.output
    assert "0 added, 1 changed, 2 unchanged" in changed.output and "changed: pumps-01" in changed.output

    rows[1][-1] = "valves/v9.jpg"
    bad = runner.invoke(app, ["catalog", "import", str(write_csv(path, HEADER, rows)), "--images", str(photos),
                              "--db", str(db_path)])
    assert bad.exit_code == 1
    assert f"error: {path}: row 2: column 'image': file valves/v9.jpg not found under {photos}/" in bad.output


def test_cli_import_into_a_database_a_server_holds_is_a_clear_error(tmp_path: Path, photos: Path,
                                                                   db_path: Path) -> None:
    connect(db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "time.sleep(60)", str(db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        path = write_csv(tmp_path / "catalog.csv", HEADER, good_rows())
        result = CliRunner().invoke(app, ["catalog", "import", str(path), "--images", str(photos), "--db", str(db_path)])
        assert result.exit_code == 2
        assert "is in use by another process (is `armor-ab serve` running?)" in result.output
    finally:
        holder.kill()
        holder.wait()
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM catalog_items").fetchone()[0] == 0
    finally:
        con.close()


def test_a_photo_changed_after_the_check_fails_the_import_before_any_row(tmp_path: Path, photos: Path,
                                                                        db_path: Path, monkeypatch) -> None:
    """The rows name photos by the hash of the bytes that were checked; if a file changes between
    the check and the write, the import stops before storing anything."""
    from armor_ab.catalog import importer

    real = importer.parse_catalog

    def parse_then_change(*args, **kwargs):
        parsed = real(*args, **kwargs)
        (photos / "pumps" / "p1.png").write_bytes(png("red"))
        return parsed

    monkeypatch.setattr("armor_ab.services.catalog_import.parse_catalog", parse_then_change)
    path = write_csv(tmp_path / "catalog.csv", HEADER, good_rows())
    with pytest.raises(CatalogFileError, match=rf"^{re.escape(str(path))}: row 1: column 'image': file pumps/p1.png changed"):
        do_import(db_path, path, photos)
    assert catalog_rows(db_path) == ([], 0)
    assert f"{hashlib.sha256(png('red')).hexdigest()}.png" not in stored_files(db_path)

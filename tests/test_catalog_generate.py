"""A manufacturer's own catalog drives content: `experiment validate` checks the prompts against its
fields, `content generate --items` selects its items by id or category, and a page's seed follows the
item's place in the catalog, whatever else was generated with it."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from armor_ab.assets import DEMO_EXPERIMENT
from armor_ab.cli import app
from tests.helpers.content import CHECKS_OFF

runner = CliRunner()
EXP = "catalog-interleaved"
DEMO_PROMPT = 'prompt: "Describe {name} for our catalog, with pictures."'

# Not the demo's: other categories, a spec the demo lacks (torque), an extra column (material), and
# one item without a voltage (an empty spec cell is no spec). Drills sit at positions 0, 1 and 4.
CATALOG_CSV = """id,name,category,description,spec_torque,spec_voltage,material
drill-01,Drill D-01,drills,A compact drill.,40 Nm,18 V,aluminium
drill-02,Drill D-02,drills,A heavy drill.,80 Nm,36 V,steel
saw-01,Saw S-01,saws,A circular saw.,12 Nm,18 V,magnesium
saw-02,Saw S-02,saws,A jigsaw.,6 Nm,,steel
drill-03,Drill D-03,drills,A right-angle drill.,25 Nm,12 V,composite
saw-03,Saw S-03,saws,A mitre saw.,20 Nm,230 V,aluminium
"""


def write_catalog(tmp: Path) -> Path:
    path = tmp / "tools.csv"
    path.write_text(CATALOG_CSV)
    return path


def import_catalog(db: Path, catalog: Path) -> None:
    r = runner.invoke(app, ["catalog", "import", str(catalog), "--db", str(db)])
    assert r.exit_code == 0, r.output


def experiment_file(tmp: Path, prompt: str, name: str = "exp.yaml") -> Path:
    path = tmp / name
    text = DEMO_EXPERIMENT.read_text()
    assert DEMO_PROMPT in text
    path.write_text(text.replace(DEMO_PROMPT, f'prompt: "{prompt}", model: armor-tiny, max_images: 1') + CHECKS_OFF)
    return path


def validate(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["experiment", "validate", *args], env=env)


def test_validate_checks_prompts_against_the_imported_fields(tmp_path: Path) -> None:
    db = tmp_path / "tools.duckdb"
    import_catalog(db, write_catalog(tmp_path))

    good = experiment_file(tmp_path, "Describe {name}, made of {material}, torque {spec_torque}.")
    ok = validate(str(good), "--db", str(db))
    assert ok.exit_code == 0, ok.output
    assert "prompts fit the 6 catalog items" in ok.output

    bad = experiment_file(tmp_path, "Describe {name} in {spec_colour}.", "bad.yaml")
    refused = validate(str(bad), "--db", str(db))
    assert refused.exit_code == 2
    message = refused.output
    assert str(bad) in message and "variant 'armor'" in message and "{spec_colour}" in message
    assert "no catalog item has" in message
    # The message lists what a template may name: imported columns and specs included.
    assert "material" in message and "spec_torque" in message and "torque" in message

    partial = experiment_file(tmp_path, "Describe {name} at {spec_voltage}.", "partial.yaml")
    some = validate(str(partial), "--db", str(db))
    assert some.exit_code == 2
    assert "{spec_voltage}" in some.output and "1 of 6 catalog items lack" in some.output
    assert "saw-02" in some.output

    # Several files: each fault names its own file; a good file is still reported ok.
    both = validate(str(good), str(bad), "--db", str(db))
    assert both.exit_code == 2 and f"{good}: ok" in both.output and str(bad) in both.output


def test_validate_says_when_there_is_no_catalog_to_check_against(tmp_path: Path) -> None:
    prompt = experiment_file(tmp_path, "Describe {name} in {spec_colour}.")
    # No database at the default path (CI on an experiment repo): the file is checked, and it says
    # that the prompts were not.
    nowhere = tmp_path / "none" / "armor_ab.duckdb"
    ci = validate(str(prompt), env={"ARMOR_AB_DB": str(nowhere)})
    assert ci.exit_code == 0, ci.output
    assert "prompt fields not checked" in ci.output and str(nowhere) in ci.output
    assert not nowhere.exists()  # validating does not create a database
    # An explicit database without a catalog: an error, telling how to import one.
    empty = tmp_path / "empty.duckdb"
    assert runner.invoke(app, ["experiment", "list", "--db", str(empty)]).exit_code == 0
    refused = validate(str(prompt), "--db", str(empty))
    assert refused.exit_code == 2
    assert "no catalog imported" in refused.output and "armor-ab catalog import" in refused.output
    # The default database without a catalog: said too, not skipped silently.
    said = validate(str(prompt), env={"ARMOR_AB_DB": str(empty)})
    assert said.exit_code == 0 and "no catalog imported" in said.output


def _pages(db: Path) -> dict[str, dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT item_id, content, prompt FROM content WHERE experiment = ?", [EXP]).fetchall()
    finally:
        con.close()
    return {item: {"content": json.loads(content), "prompt": prompt} for item, content, prompt in rows}


def _prepare(tmp: Path, name: str, yaml_file: Path, catalog: Path) -> Path:
    db = tmp / f"{name}.duckdb"
    import_catalog(db, catalog)
    r = runner.invoke(app, ["experiment", "apply", str(yaml_file), "--db", str(db)])
    assert r.exit_code == 0, r.output
    return db


def test_generate_selects_items_by_category_or_id_with_seeds_from_the_catalog(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path)
    yaml_file = experiment_file(tmp_path, "Describe {name} ({material}, {spec_torque}) for our catalog.")

    grouped = _prepare(tmp_path, "grouped", yaml_file, catalog)
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", "drills", "--db", str(grouped)])
    assert r.exit_code == 0, r.output
    assert "3 generated, 0 already there" in r.output
    pages = _pages(grouped)
    assert set(pages) == {"drill-01", "drill-02", "drill-03"}  # only the category asked for
    assert pages["drill-02"]["prompt"] == "Describe Drill D-02 (steel, 80 Nm) for our catalog."
    # The seed is the variant's seed plus the item's catalog position (drill-03 is fifth).
    assert [pages[i]["content"]["metadata"]["seed"] for i in ("drill-01", "drill-02", "drill-03")] == [0, 1, 4]

    # drill-02 alone (and by id) gets the very page it got beside drill-01 and drill-03.
    alone = _prepare(tmp_path, "alone", yaml_file, catalog)
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", "drill-02", "--db", str(alone)])
    assert r.exit_code == 0, r.output
    single = _pages(alone)
    assert set(single) == {"drill-02"}
    page, beside = single["drill-02"]["content"], pages["drill-02"]["content"]
    assert page["segments"] == beside["segments"]
    # (metadata.sampling is the settings of the batch the page was in; its own seed is metadata.seed.)
    assert page["metadata"]["seed"] == beside["metadata"]["seed"] == 1

    # Ids and categories mix; what exists is skipped.
    again = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", "drill-02, saw-03",
                                "--db", str(alone)])
    assert again.exit_code == 0 and "1 generated, 1 already there" in again.output, again.output
    assert _pages(alone)["saw-03"]["content"]["metadata"]["seed"] == 5


def test_generate_refuses_unknown_items_and_a_missing_catalog(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path)
    yaml_file = experiment_file(tmp_path, "Describe {name}.")
    bare = tmp_path / "bare.duckdb"
    assert runner.invoke(app, ["experiment", "apply", str(yaml_file), "--db", str(bare)]).exit_code == 0
    none = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--db", str(bare)])
    assert none.exit_code == 2 and "no catalog in" in none.output and "armor-ab catalog import" in none.output

    db = _prepare(tmp_path, "tools", yaml_file, catalog)
    unknown = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", "drills,hammers,saw-9",
                                  "--db", str(db)])
    assert unknown.exit_code == 2
    assert "'hammers'" in unknown.output and "'saw-9'" in unknown.output and "'drills'" not in unknown.output
    assert _pages(db) == {}  # nothing generated

    # A field one selected item lacks stops the run before the first page, naming that item.
    partial = experiment_file(tmp_path, "Describe {name} at {spec_voltage}.", "partial.yaml")
    assert runner.invoke(app, ["experiment", "apply", str(partial), "--db", str(db)]).exit_code == 0
    lacking = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", "saws", "--db", str(db)])
    assert lacking.exit_code == 2
    assert "{spec_voltage}" in lacking.output and "'saw-02'" in lacking.output and "spec_torque" in lacking.output
    assert _pages(db) == {}

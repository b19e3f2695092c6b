"""Experiments as code: the YAML model, file errors that name the field, the CLI lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.experiments.loader import ExperimentFileError, load_experiment_file
from tests.helpers.platform import DEMO_EXPERIMENT

runner = CliRunner()

ISSUE_YAML = """\
key: catalog-interleaved
name: ARMOR interleaved catalog pages
hypothesis: Product pages with generated text and images raise dwell time and inquiries.
owner: pm@example.com
coverage: 1.0            # share of traffic in the experiment
hash_seed: catalog-interleaved   # optional, defaults to key
variants:
  - {key: control, weight: 0.5, content: {source: catalog}}
  - {key: armor, weight: 0.5, content: {source: armor, prompt: "Describe {name} for our catalog, with pictures."}}
metrics: {primary: dwell_time_per_view, secondary: [inquiry_rate], guardrails: []}
alpha: 0.05
mde: 0.05
"""


def test_the_documented_file_is_accepted_as_is(tmp_path: Path) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(ISSUE_YAML)
    spec = load_experiment_file(f)
    assert spec.key == "catalog-interleaved" and spec.seed == "catalog-interleaved"
    assert spec.control_key == "control" and spec.weights == [0.5, 0.5]
    assert spec.variants[1].content.source == "armor" and "{name}" in spec.variants[1].content.prompt
    assert spec.metrics.all() == ["dwell_time_per_view", "inquiry_rate"]
    assert load_experiment_file(DEMO_EXPERIMENT).roi is not None


def test_hash_seed_defaults_to_key(tmp_path: Path) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(ISSUE_YAML.replace("hash_seed: catalog-interleaved   # optional, defaults to key\n", ""))
    assert load_experiment_file(f).seed == "catalog-interleaved"


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (("coverage: 1.0", "coverage: 1.5"), "coverage", "less than or equal to 1"),
        (("weight: 0.5, content: {source: catalog}", "weight: 0.7, content: {source: catalog}"), None, "sum to 1"),
        (("primary: dwell_time_per_view", "primary: revenue"), "metrics.primary", "dwell_time_per_view"),
        (("alpha: 0.05", "alpha: high"), "alpha", "number"),
        (("key: catalog-interleaved", "key: Catalog Interleaved"), "key", "pattern"),
        (("mde: 0.05", "mde: 0.05\ncolour: blue"), "colour", "Extra inputs"),
        (("source: armor, prompt: \"Describe {name} for our catalog, with pictures.\"", "source: armor"),
         "variants[1].content", "prompt"),
        (("{key: armor, weight: 0.5", "{key: control, weight: 0.5"), None, "unique"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, edit, field, words) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(ISSUE_YAML.replace(*edit))
    with pytest.raises(ExperimentFileError) as info:
        load_experiment_file(f)
    message = str(info.value)
    assert str(f) in message and words in message
    if field:
        assert info.value.field == field and f"field '{field}'" in message


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("key: x\nvariants: [\n  - a\n")
    with pytest.raises(ExperimentFileError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_experiment_file(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ExperimentFileError, match="mapping"):
        load_experiment_file(f)


def test_cli_apply_lifecycle_and_bucket_versions(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    f = tmp_path / "e.yaml"
    f.write_text(ISSUE_YAML)
    r = runner.invoke(app, ["experiment", "apply", str(f), "--db", db])
    assert r.exit_code == 0 and "create" in r.output and "draft" in r.output
    assert "unchanged" in runner.invoke(app, ["experiment", "apply", str(f), "--db", db]).output
    assert "running" in runner.invoke(app, ["experiment", "start", "catalog-interleaved", "--db", db]).output
    bad_start = runner.invoke(app, ["experiment", "start", "catalog-interleaved", "--db", db])
    assert bad_start.exit_code == 2 and "cannot go to running" in bad_start.output
    # Copy edits are fine while running; re-weighting is refused without --new-bucket-version.
    f.write_text(ISSUE_YAML.replace("name: ARMOR interleaved catalog pages", "name: Renamed"))
    assert "update" in runner.invoke(app, ["experiment", "apply", str(f), "--db", db]).output
    f.write_text(ISSUE_YAML.replace("weight: 0.5, content: {source: catalog}", "weight: 0.3, content: {source: catalog}")
                 .replace("{key: armor, weight: 0.5", "{key: armor, weight: 0.7"))
    refused = runner.invoke(app, ["experiment", "apply", str(f), "--db", db])
    assert refused.exit_code == 2 and "--new-bucket-version" in refused.output and str(f) in refused.output
    ok = runner.invoke(app, ["experiment", "apply", str(f), "--db", db, "--new-bucket-version"])
    assert ok.exit_code == 0 and "rebucket" in ok.output and "bucket version 1" in ok.output
    shown = json.loads(runner.invoke(app, ["experiment", "show", "catalog-interleaved", "--db", db]).output)
    assert shown["bucket_version"] == 1 and shown["effective_seed"] == "catalog-interleaved:v1"
    assert "stopped" in runner.invoke(app, ["experiment", "stop", "catalog-interleaved", "--db", db]).output
    import duckdb

    con = duckdb.connect(db, read_only=True)
    actions = [a for (a,) in con.execute(
        "SELECT action FROM experiment_history ORDER BY revision").fetchall()]
    con.close()
    assert actions == ["create", "start", "update", "rebucket", "stop"]


def test_cli_bad_file_exit_code_and_message(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(ISSUE_YAML.replace("coverage: 1.0", "coverage: -1"))
    r = runner.invoke(app, ["experiment", "apply", str(f), "--db", str(tmp_path / "x.duckdb")])
    assert r.exit_code == 2 and "field 'coverage'" in r.output and str(f) in r.output
    missing = runner.invoke(app, ["experiment", "validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read file" in missing.output


def test_keys_cli_prints_the_secret_once_and_stores_a_hash(tmp_path: Path) -> None:
    db = str(tmp_path / "k.duckdb")
    r = runner.invoke(app, ["keys", "create", "--scope", "client", "--name", "shop", "--db", db])
    assert r.exit_code == 0
    secret = r.stdout.strip().splitlines()[0]
    assert secret.startswith("aab_")
    import duckdb

    con = duckdb.connect(db, read_only=True)
    stored = con.execute("SELECT key_hash, scope FROM api_keys").fetchall()
    con.close()
    assert len(stored) == 1 and secret not in stored[0][0] and stored[0][1] == "client"
    bad = runner.invoke(app, ["keys", "create", "--scope", "root", "--db", db])
    assert bad.exit_code == 2 and "--scope" in bad.output

"""Batch generation on Ray (``armor-ab content generate --ray``, ``armor_ab.content.ray_generate``) on a
local 2-CPU Ray cluster with armor-tiny: the same pages (digest, text, pictures) and the same checks as a
single process, an actor that dies mid-run changes nothing, a rerun generates only what is missing, and
without Ray installed ``--ray`` names the extra to install. Pages are short (``_short``) in both paths."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from tests.helpers.content import EXP, checks_policy
from tests.helpers.platform import ROOT, seed_database

ray = pytest.importorskip("ray", reason="the scale extra (Ray) is not installed")
pytest.importorskip("ray.data")

from armor_ab.content.ray_generate import EXTRA, PageWriter  # noqa: E402 - after the skip

runner = CliRunner()
ITEMS = ["pumps-01", "pumps-02", "pumps-03", "pumps-04", "pumps-05", "pumps-06"]  # catalog positions 0-5
# Positions 0, 1, 2, 4, 5: runs [0, 1, 2] and [4, 5]; batches of 2: [0, 1], [2], [4, 5].
SELECTED = "pumps-01,pumps-02,pumps-03,pumps-05,pumps-06"
# A prompt armor-tiny's random weights answer with a picture. Variant armor-b's seed is armor's + 1, so its
# page of position p is armor's page of position p + 1: the same picture for another item, which
# image_sanity's duplicate check (run by the driver, in the single process's order) fails on armor-b's page.
PROMPT = "show steel pictures bearing"
EXPERIMENT = f"""key: {EXP}
name: Ray batch generation
owner: pm@example.com
variants:
  - {{key: control, weight: 0.5, content: {{source: catalog}}}}
  - {{key: armor, weight: 0.25, content: {{source: armor, prompt: "{PROMPT}", model: armor-tiny, max_images: 1}}}}
  - {{key: armor-b, weight: 0.25, content: {{source: armor, prompt: "{PROMPT}", model: armor-tiny, max_images: 1,
      seed: 1}}}}
metrics: {{primary: dwell_time_per_view}}
""" + checks_policy("when_all_pass", image_sanity="{action: block}", text_hygiene="{action: warn}",
                    terms='{action: block, blocked: ["pump"]}')


def _short(content, index: int):
    """Shorter pages than the catalog's (48 text tokens, not 160; armor-tiny draws its picture after 17):
    these tests are about where pages are made, not about the writing. Both paths use it."""
    from armor_ab.model import SamplingConfig

    return SamplingConfig(max_images=content.max_images, seed=content.seed + index, max_new_tokens=48,
                          temperature=0.0, image_temperature=1.0)


class ShortPages(PageWriter):
    """The actor, writing ``_short`` pages (set in the actor's own process, as the test sets its own)."""

    def __init__(self, *args, **kwargs) -> None:
        import armor_ab.content.generate

        armor_ab.content.generate.page_sampling = _short
        super().__init__(*args, **kwargs)


class CrashOnce(ShortPages):
    """An actor whose process dies on its first batch of the run (once: a marker file beside the images)."""

    def __call__(self, batch: dict) -> dict:
        marker = self.images_dir.parent / "actor-crashed"
        if not marker.exists():
            marker.touch()
            os._exit(1)
        return super().__call__(batch)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs. Its workers import this checkout (armor_ab, and this module for
    ``CrashOnce``): the cluster's processes inherit the environment they start with (a runtime_env would
    cost each worker about 2 s)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    try:
        yield
    finally:
        ray.shutdown()


def _database(tmp: Path) -> Path:
    (tmp / "exp.yaml").write_text(EXPERIMENT)
    db = tmp / "armor_ab.duckdb"
    seed_database(db, tmp / "exp.yaml", items=ITEMS)
    return db


def _generate(db: Path, *, on_ray: bool, actor_class: type = ShortPages):
    from armor_ab.cli.content import select_items
    from armor_ab.content.generate import generate_content
    from armor_ab.content.ray_generate import generate_content_ray
    from armor_ab.store.content import images_dir_for
    from armor_ab.store.db import connect
    from armor_ab.store.experiments import get_experiment

    con = connect(db)
    try:
        record, items = get_experiment(con, EXP), select_items(con, SELECTED, db)
        if on_ray:
            return generate_content_ray(con, record, items, images_dir_for(db), batch_size=2, progress=False,
                                        actors=2, actor_class=actor_class)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("armor_ab.content.generate.page_sampling", _short)
            return generate_content(con, record, items, images_dir_for(db), batch_size=2, progress=False)
    finally:
        con.close()


def _pages(db: Path, *, checks: bool = True) -> dict:
    """(variant, item) -> what a page is: digest, content (text and picture hashes), status and checks."""
    out = {}
    for row in _all_rows(db):
        page = {"digest": row.digest, "content": row.content, "prompt": row.prompt, "model": row.model,
                "images": [s["sha256"] for s in row.content["segments"] if s["type"] == "image"]}
        if checks:
            page |= {"status": row.status, "verdict": row.verdict, "reviewed_by": row.reviewed_by,
                     "results": row.checks["results"], "policy_hash": row.checks["policy_hash"]}
        out[(row.variant, row.item_id)] = page
    return out


def _but_batch_seed(page: dict) -> dict:
    """A page (``_pages``) without its digest and its batch's seed (``metadata.sampling.seed``)."""
    content = json.loads(json.dumps(page["content"]))
    del content["metadata"]["sampling"]["seed"]
    return {k: v for k, v in page.items() if k != "digest"} | {"content": content}


def _all_rows(db: Path) -> list:
    from armor_ab.store.content import list_content
    from armor_ab.store.db import connect

    con = connect(db, read_only=True)
    try:
        return list_content(con, EXP)
    finally:
        con.close()


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    db = _database(tmp_path_factory.mktemp("single"))
    report = _generate(db, on_ray=False)
    assert report.generated == 10
    return db


def test_ray_pages_and_checks_equal_a_single_process_run(cluster, single, tmp_path) -> None:
    """An actor dies on its first batch: Ray restarts it and retries; the pages, their checks and the
    report are the single process's, and nothing but whole pages is stored."""
    db = _database(tmp_path)
    report = _generate(db, on_ray=True, actor_class=CrashOnce)
    assert (tmp_path / "actor-crashed").exists()  # the actor did die
    expected = _pages(single)
    assert _pages(db) == expected
    assert report.generated == 10 and report.by_variant == {"armor": 5, "armor-b": 5}
    assert report.by_verdict == _generate_report_of(single)
    # Every page drew a picture; armor-b's pages of positions 0, 1 and 4 are armor's of 1, 2 and 5 (another
    # item's picture: the driver's duplicate check fails them, as the single process does), the rest pass.
    assert all(len(page["images"]) == 1 for page in expected.values())
    duplicates = {item for (variant, item), page in expected.items() if page["verdict"] == "fail"}
    assert duplicates == {"pumps-01", "pumps-02", "pumps-05"}
    for item, other in (("pumps-01", "pumps-02"), ("pumps-02", "pumps-03"), ("pumps-05", "pumps-06")):
        assert expected[("armor-b", item)]["images"] == expected[("armor", other)]["images"]
        sanity = next(r for r in expected[("armor-b", item)]["results"] if r["check"] == "image_sanity")
        assert sanity["status"] == "fail" and f"picture of item {other}" in sanity["reason"]
    for (variant, _), page in expected.items():
        sanity = next(r for r in page["results"] if r["check"] == "image_sanity")
        assert variant == "armor-b" or sanity["status"] == "pass"
    images = tmp_path / "images"
    pictures = {sha for page in expected.values() for sha in page["images"]}
    assert pictures <= {p.stem for p in images.glob("*.png")}


def _generate_report_of(db: Path) -> dict[str, int]:
    verdicts: dict[str, int] = {}
    for row in _all_rows(db):
        verdicts[row.verdict] = verdicts.get(row.verdict, 0) + 1
    return verdicts


def test_cli_rerun_on_ray_generates_only_the_missing_pages(cluster, single, tmp_path, monkeypatch) -> None:
    """``content generate --ray``: pages already stored are skipped, the missing ones come out as the single
    process wrote them (same seeds)."""
    import shutil

    from armor_ab.store.db import connect

    db = tmp_path / single.name
    for path in single.parent.glob(single.name + "*"):  # the file and any write-ahead log
        shutil.copy(path, tmp_path / path.name)
    shutil.copytree(single.parent / "images", tmp_path / "images")
    con = connect(db)
    con.execute("DELETE FROM content WHERE (variant = 'armor' AND item_id = 'pumps-03') "
                "OR (variant = 'armor-b' AND item_id = 'pumps-06')")
    con.close()
    monkeypatch.setattr("armor_ab.content.ray_generate.PageWriter", ShortPages)
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", SELECTED, "--batch-size", "2",
                            "--db", str(db), "--ray", "--ray-actors", "1"])
    assert r.exit_code == 0, r.output
    assert "2 generated, 8 already there" in r.output
    # The pages are the single process's: text, pictures, each page's own seed. A page's metadata also
    # records its batch's sampling settings, whose seed is the batch's first row's: armor-b's pumps-06, row 2
    # of batch [pumps-05, pumps-06] in the first run, is now a batch of its own (as in a single-process
    # rerun), so that seed, and with it the digest, differ; armor's pumps-03 was alone in its batch before too.
    rerun, first = _pages(db, checks=False), _pages(single, checks=False)
    assert {k: _but_batch_seed(v) for k, v in rerun.items()} == {k: _but_batch_seed(v) for k, v in first.items()}
    assert [k for k in rerun if rerun[k]["digest"] != first[k]["digest"]] == [("armor-b", "pumps-06")]
    assert rerun[("armor-b", "pumps-06")]["content"]["metadata"]["sampling"]["seed"] == 1 + 5
    # The checks of a regenerated page also see the pages stored since (armor's pumps-03 has armor-b's
    # pumps-02 picture), as a single-process rerun's would.
    sanity = next(r for r in _pages(db)[("armor", "pumps-03")]["results"] if r["check"] == "image_sanity")
    assert sanity["status"] == "fail" and "picture of item pumps-02" in sanity["reason"]


def test_ray_is_an_optional_extra(monkeypatch, tmp_path) -> None:
    db = _database(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--ray", "--db", str(db)])
    assert r.exit_code != 0 and EXTRA in r.output and "--ray needs Ray" in r.output
    assert not _all_rows(db)
    lone = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--ray-actors", "2", "--db", str(db)])
    assert lone.exit_code != 0 and "--ray-actors needs --ray" in lone.output

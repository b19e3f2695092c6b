"""Guardrails on generated content: every generated page (batch or on demand) is checked and stored with
its checks and verdict; a page that fails a blocking check is never served (control's copy, fallback
``guardrail``) and no one may approve it; reviews record who made them; every exposure of ``…/content``
records the digest of the page it served; ``armor-ab content check`` re-runs the checks after a policy
change and serving follows.

The policies here turn every check off but ``terms`` (blocked patterns), whose answer does not depend on
what armor-tiny's random weights write: ``(?s).`` matches any page, no pattern matches none."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from armor_ab.api.app import create_app
from armor_ab.cli import app
from armor_ab.content.control import control_content
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
from armor_ab.services.state import ServerSettings, json_bytes
from armor_ab.store.catalog import get_item
from armor_ab.store.content import (
    Reviewed,
    approved,
    images_dir_for,
    list_content,
    save_generated,
    set_checks,
    set_review,
    statuses,
)
from armor_ab.store.db import connect
from armor_ab.store.experiments import get_experiment, upsert_experiment
from armor_ab.store.keys import list_keys
from tests.helpers.content import EXP, checks_policy
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database

runner = CliRunner()
DEMO_PROMPT = 'prompt: "Describe {name} for our catalog, with pictures."'
BLOCK_ALL = '{action: block, blocked: ["(?s)."]}'  # every page with any text fails
TERMS_ON = "{action: block, blocked: []}"  # terms runs, and every page passes it


def experiment_yaml(tmp: Path, policy: str, *, on_demand: bool = False) -> Path:
    path = tmp / "exp.yaml"
    extra = ", on_demand: true" if on_demand else ""
    path.write_text(DEMO_EXPERIMENT.read_text().replace(
        DEMO_PROMPT, f'prompt: "Describe {{name}} for our catalog, with pictures.", model: armor-tiny, '
        f'max_images: 1{extra}') + policy)
    return path


def visitors(spec, variant: str, n: int) -> list[str]:
    """``n`` visitor ids the experiment assigns ``variant``."""
    assigner = Assigner.from_experiment(spec)
    out = [f"gv-{i}" for i in range(2000) if assigner.assign(f"gv-{i}").variant == variant]
    return out[:n]


def hand_page(item: str, text: str = "made by hand.") -> InterleavedContent:
    return InterleavedContent(
        [TextSegment(f"{item}: {text}"), ImageSegment.from_pil(Image.new("RGB", (64, 64), "teal"))],
        ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt=f"Describe {item}"))


def checks_json(verdict: str) -> dict:
    """A ``PageChecks.to_json()`` whose one ``terms`` result gives ``verdict``."""
    status, action = {"pass": ("pass", "block"), "warn": ("fail", "warn"), "fail": ("fail", "block")}[verdict]
    return {"verdict": verdict, "checked_at": "2026-01-01T00:00:00+00:00", "policy_hash": "0" * 64, "made_by": {},
            "results": [{"check": "terms", "status": status, "action": action, "reason": "hand-made",
                         "evidence": []}]}


def control_digest(db: Path, item_id: str) -> str:
    con = connect(db, read_only=True)
    try:
        return hashlib.sha256(json_bytes(control_content(get_item(con, item_id)))).hexdigest()
    finally:
        con.close()


def exposures(db: Path) -> dict[str, dict]:
    """user id -> properties of the visitor's exposure in the DuckDB file ``db``."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT user_id, properties FROM events WHERE type = 'exposure'").fetchall()
    finally:
        con.close()
    return {user: json.loads(props) if props else {} for user, props in rows}


# -- the store ---------------------------------------------------------------------------------------


def test_the_store_never_approves_or_serves_a_failing_page(tmp_path) -> None:
    db = tmp_path / "s.duckdb"
    seed_database(db, items=["pumps-01", "valves-02", "motors-03"])
    con = connect(db)
    try:
        for item, verdict in (("pumps-01", "pass"), ("valves-02", "warn"), ("motors-03", "fail")):
            save_generated(con, images_dir_for(db), EXP, "armor", item, hand_page(item), "p",
                           checks=checks_json(verdict), verdict=verdict)
        with pytest.raises(ValueError, match="blocking"):
            save_generated(con, images_dir_for(db), EXP, "armor", "motors-03", hand_page("motors-03"), "p",
                           status="approved", checks=checks_json("fail"), verdict="fail")
        # One page named: refused whole, nothing changes.
        one = set_review(con, EXP, "approved", item_id="motors-03", reviewed_by="ann", reviewed_key="k1",
                         all_or_nothing=True)
        assert one.changed == 0 and [(r.item_id, r.failing) for r in one.refused] == [("motors-03", ("terms",))]
        # Approve what passes, then everything: the failing page is skipped and counted.
        passing = set_review(con, EXP, "approved", verdict="pass", reviewed_by="ann", reviewed_key="k1")
        assert (passing.changed, len(passing.refused)) == (1, 0)
        bulk = set_review(con, EXP, "approved", reviewed_by="bob", reviewed_key="cli")
        assert (bulk.changed, len(bulk.refused)) == (2, 1)
        assert pickle.loads(pickle.dumps(bulk)) == bulk and isinstance(bulk, Reviewed)  # it crosses from the database process
        assert (bulk.unchanged, bulk.passed_over, bulk.skipped) == (0, 0, 1)
        rows = {r.item_id: r for r in list_content(con, EXP)}
        assert (rows["valves-02"].status, rows["valves-02"].reviewed_by, rows["valves-02"].reviewed_key) == (
            "approved", "bob", "cli")
        assert rows["motors-03"].status == "pending" and rows["motors-03"].reviewed_by is None
        public = rows["motors-03"].public()
        assert (public["verdict"], public["failing"], public["checks"]["results"][0]["check"]) == (
            "fail", ["terms"], "terms")
        assert [r.item_id for r in list_content(con, EXP, verdict="warn")] == ["valves-02"]
        # Rejecting a failing page is allowed.
        assert set_review(con, EXP, "rejected", item_id="motors-03", all_or_nothing=True).changed == 1
        assert set(approved(con)) == {(EXP, "armor", "pumps-01"), (EXP, "armor", "valves-02")}
        # An approved page whose re-check fails stays approved but is no longer served: "blocked".
        assert set_checks(con, EXP, "armor", "pumps-01", checks_json("fail"), "fail")
        assert not set_checks(con, EXP, "armor", "no-such-item", checks_json("fail"), "fail")
        assert set(approved(con)) == {(EXP, "armor", "valves-02")}
        assert statuses(con)[(EXP, "armor", "pumps-01")] == "blocked"
        assert statuses(con)[(EXP, "armor", "motors-03")] == "rejected"  # a human's rejection says more
        assert {r.item_id: r.status for r in list_content(con, EXP)}["pumps-01"] == "approved"
    finally:
        con.close()


# -- batch generation and `armor-ab content check` -------------------------------------------------


def _short(content, index: int):
    """Shorter pages than the catalog's: these tests are about the checks, not the writing."""
    from armor_ab.model import SamplingConfig

    return SamplingConfig(max_images=content.max_images, seed=content.seed + index, max_new_tokens=24,
                          temperature=0.0, image_temperature=1.0)


def _generate(con, items: list[str], db: Path):
    from armor_ab.content.generate import generate_content

    rec = get_experiment(con, EXP)
    return generate_content(con, rec, [get_item(con, i) for i in items], images_dir_for(db), progress=False)


def _set_policy(con, **policy) -> None:
    spec = get_experiment(con, EXP).spec
    upsert_experiment(con, ExperimentSpec.model_validate({**spec.model_dump(), "content_checks": policy}))


OFF = {name: {"action": "off"} for name in ("spec_fidelity", "modality", "image_sanity", "image_text", "text_hygiene")}


def test_batch_generation_checks_every_page_and_content_check_follows_the_policy(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("armor_ab.content.generate.page_sampling", _short)
    db = tmp_path / "b.duckdb"
    seed_database(db, experiment_yaml(tmp_path, checks_policy("never", terms=BLOCK_ALL)),
                  items=["pumps-01", "valves-02", "motors-03", "bearings-04"])
    con = connect(db)
    try:
        # auto_approve: never, and every page fails the blocking terms check: stored pending, checks and all.
        report = _generate(con, ["pumps-01", "valves-02"], db)
        assert (report.generated, report.by_verdict, report.failing, report.approved) == (
            2, {"fail": 2}, {"terms": 2}, 0)
        assert report.checks_summary() == "2 fail (terms 2)"
        rows = {r.item_id: r for r in list_content(con, EXP)}
        for row in rows.values():
            assert (row.status, row.verdict, row.failing(), row.reviewed_by) == ("pending", "fail", ["terms"], None)
            result = row.checks["results"][0]
            assert (result["check"], result["status"], result["action"]) == ("terms", "fail", "block")
            assert result["evidence"] and row.checks["made_by"]["model"] == "armor-tiny"
        # never: a passing page waits for a human.
        _set_policy(con, auto_approve="never", terms={"blocked": []}, **OFF)
        report = _generate(con, ["motors-03"], db)
        assert (report.by_verdict, report.approved) == ({"pass": 1}, 0)
        # when_all_pass: a passing page is approved by the guardrails.
        _set_policy(con, auto_approve="when_all_pass", terms={"blocked": []}, **OFF)
        report = _generate(con, ["bearings-04"], db)
        assert (report.by_verdict, report.approved) == ({"pass": 1}, 1)
        rows = {r.item_id: r for r in list_content(con, EXP)}
        assert (rows["motors-03"].status, rows["motors-03"].verdict) == ("pending", "pass")
        assert (rows["bearings-04"].status, rows["bearings-04"].reviewed_by) == ("approved", "guardrails")
        assert set(approved(con)) == {(EXP, "armor", "bearings-04")}
        # Block exactly bearings-04's text from now on (the pattern matches no other page).
        text = "".join(s["text"] for s in rows["bearings-04"].content["segments"] if s["type"] == "text")
        pattern = re.escape(text)
        others = ["".join(s["text"] for s in r.content["segments"] if s["type"] == "text")
                  for i, r in rows.items() if i != "bearings-04"]
        assert text and not any(re.search(pattern, o, re.IGNORECASE) for o in others)
        _set_policy(con, auto_approve="when_all_pass", terms={"blocked": [pattern]}, **OFF)
    finally:
        con.close()

    # The CLI: approving a failing page is refused, a bulk approve skips it; list shows verdicts.
    r = runner.invoke(app, ["content", "approve", EXP, "--item", "pumps-01", "--reviewer", "ann", "--db", str(db)])
    assert r.exit_code == 2 and "fails a blocking check" in r.output and "terms" in r.output, r.output
    listed = runner.invoke(app, ["content", "list", EXP, "--db", str(db)]).output
    assert "pumps-01\tarmor\tpending\tfail\tterms\t" in listed and "bearings-04\tarmor\tapproved\tpass\t-\t" in listed

    # Re-check under the new policy: bearings-04 now fails (approved, but no longer served); the pages that
    # failed before now pass and, pending, are approved by the guardrails (when_all_pass).
    r = runner.invoke(app, ["content", "check", EXP, "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert f"{EXP}: 4 checked: 3 pass, 1 fail (terms 1)" in r.output
    con = connect(db)
    try:
        rows = {r.item_id: r for r in list_content(con, EXP)}
        assert {i: (r.status, r.verdict) for i, r in rows.items()} == {
            "bearings-04": ("approved", "fail"), "motors-03": ("approved", "pass"),
            "pumps-01": ("approved", "pass"), "valves-02": ("approved", "pass")}
        assert rows["pumps-01"].reviewed_by == "guardrails"
        assert statuses(con)[(EXP, "armor", "bearings-04")] == "blocked"
        assert (EXP, "armor", "bearings-04") not in approved(con)
        # A warned page is approvable from the CLI, which records the reviewer and key "cli".
        set_checks(con, EXP, "armor", "motors-03", checks_json("warn"), "warn")
    finally:
        con.close()
    r = runner.invoke(app, ["content", "approve", EXP, "--item", "motors-03", "--reviewer", "ann", "--db", str(db)])
    assert r.exit_code == 0 and f"{EXP}: 1 approved" in r.output, r.output
    con = connect(db)
    row = {r.item_id: r for r in list_content(con, EXP)}["motors-03"]
    con.close()
    assert (row.status, row.verdict, row.reviewed_by, row.reviewed_key) == ("approved", "warn", "ann", "cli")
    r = runner.invoke(app, ["content", "approve", EXP, "--all", "--db", str(db)])
    assert r.exit_code == 0 and "3 approved (1 skipped" in r.output, r.output
    r = runner.invoke(app, ["content", "approve", EXP, "--passing", "--reviewer", "ann", "--db", str(db)])
    # pumps-01 and valves-02 pass, but --all approved them already: their review stands.
    assert r.exit_code == 0 and f"{EXP}: 0 approved (2 already reviewed, left as they were)" in r.output, r.output
    r = runner.invoke(app, ["content", "check", EXP, "--variant", "control", "--db", str(db)])
    assert r.exit_code == 2 and "variant 'control'" in r.output, r.output
    as_json = runner.invoke(app, ["content", "check", EXP, "--json", "--db", str(db)])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["by_verdict"] == {"pass": 3, "fail": 1}  # motors-03's text passes again

    # Serving follows: the page that now fails is control's copy, with fallback "guardrail".
    user = visitors(load_experiment_file(tmp_path / "exp.yaml"), "armor", 1)[0]
    headers = {"Authorization": f"Bearer {_client_key(db)}"}
    with TestClient(create_app(ServerSettings(db_path=db))) as client:
        blocked = client.get(f"/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": "bearings-04"},
                             headers=headers).json()
        served = client.get(f"/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": "pumps-01"},
                            headers=headers).json()
    assert (blocked["source"], blocked["fallback"]) == ("catalog", "guardrail")
    assert (served["source"], served["fallback"]) == ("armor", None)


def _client_key(db: Path) -> str:
    from armor_ab.store.keys import create_key

    con = connect(db)
    try:
        return create_key(con, "client", "test-client-2")[0]
    finally:
        con.close()


# -- exposures record the page served, alike through both doors ------------------------------------


def test_every_content_exposure_records_the_page_it_served(tmp_path) -> None:
    import shutil

    db = tmp_path / "x.duckdb"
    keys = seed_database(db, items=["pumps-01", "valves-02", "motors-03"])
    con = connect(db)
    try:
        digests = {}
        for item in ("pumps-01", "valves-02"):
            digests[item] = save_generated(con, images_dir_for(db), EXP, "armor", item, hand_page(item), "p",
                                           checks=checks_json("pass"), verdict="pass").digest
        set_review(con, EXP, "approved")
        set_checks(con, EXP, "armor", "valves-02", checks_json("fail"), "fail")  # approved, then failed a re-check
    finally:
        con.close()
    spec = load_experiment_file(DEMO_EXPERIMENT)
    armor, control = visitors(spec, "armor", 3), visitors(spec, "control", 1)
    cases = [("content", armor[0], "pumps-01"), ("content", armor[1], "valves-02"), ("content", control[0], "pumps-01"),
             ("assignment", armor[2], "pumps-01")]
    answers, logged = {}, {}
    for fast in (True, False):
        copy = tmp_path / f"x-{fast}.duckdb"
        shutil.copy(db, copy)
        with TestClient(create_app(ServerSettings(db_path=copy, fast_path=fast))) as client:
            answers[fast] = []
            for route, user, item in cases:
                r = client.get(f"/v1/experiments/{EXP}/{route}", params={"user_id": user, "item_id": item},
                               headers={"Authorization": f"Bearer {keys['client']}"})
                body = r.json()
                body.pop("server_time", None)
                answers[fast].append((r.status_code, body))
        logged[fast] = exposures(copy)
    assert answers[True] == answers[False] and logged[True] == logged[False]
    bodies = [b for _, b in answers[True]]
    assert [(b.get("source"), b.get("fallback")) for b in bodies[:3]] == [
        ("armor", None), ("catalog", "guardrail"), ("catalog", None)]
    props = logged[True]
    assert props[armor[0]]["page"] == digests["pumps-01"] and "fallback" not in props[armor[0]]
    assert props[armor[1]] == {**props[armor[1]], "page": control_digest(db, "valves-02"), "fallback": "guardrail"}
    assert props[control[0]]["page"] == control_digest(db, "pumps-01") and "fallback" not in props[control[0]]
    assert "page" not in props[armor[2]]  # …/assignment does not know the page


# -- on demand, through a real server ---------------------------------------------------------------


def test_an_on_demand_page_that_fails_a_blocking_check_is_never_served(tmp_path) -> None:
    yaml_file = experiment_yaml(tmp_path, checks_policy(terms=BLOCK_ALL), on_demand=True)
    db = tmp_path / "od.duckdb"
    keys = seed_database(db, yaml_file, items=["pumps-01", "valves-02", "motors-03"])
    con = connect(db)
    try:  # a page a check warned about, waiting for a human
        warned = save_generated(con, images_dir_for(db), EXP, "armor", "valves-02", hand_page("valves-02"), "p",
                                checks=checks_json("warn"), verdict="warn").digest
        admin_id = next(k.key_id for k in list_keys(con) if k.name == "test-admin")
    finally:
        con.close()
    spec = load_experiment_file(yaml_file)
    armor, control = visitors(spec, "armor", 4), visitors(spec, "control", 1)
    server = Server(db, extra_args=["--on-demand-timeout", "120"]).start()
    admin = {"Authorization": f"Bearer {keys['admin']}"}

    def content(user: str, item: str) -> dict:
        r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": item},
                      headers={"Authorization": f"Bearer {keys['client']}"}, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    def review() -> dict[str, dict]:
        r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content/review", headers={"Authorization": f"Bearer {keys['read']}"})
        return {row["item_id"]: row for row in r.json()}

    try:
        # The visitor who waited for the page gets control's copy: the page fails terms, a blocking check.
        first = content(armor[0], "pumps-01")
        assert (first["source"], first["fallback"]) == ("catalog", "guardrail")
        assert first["content"]["segments"][0]["text"].startswith("Pump")
        again = content(armor[1], "pumps-01")  # every later visitor too, and it is not generated again
        assert (again["source"], again["fallback"]) == ("catalog", "guardrail")
        stored = review()["pumps-01"]
        assert (stored["status"], stored["verdict"], stored["failing"]) == ("pending", "fail", ["terms"])
        assert stored["checks"]["results"][0]["evidence"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert f'armor_ab_content_fallback_total{{experiment="{EXP}",reason="guardrail"}} 2.0' in metrics
        # No one may approve it: 409 naming the check; a bulk approve skips it.
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                       json={"status": "approved", "item_id": "pumps-01"}, headers=admin)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "guardrail_failed" and "terms" in error["message"] and error["field"] == "item_id"
        # The warned page may be approved; the review records the key's name and id.
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                       json={"status": "approved", "item_id": "valves-02"}, headers=admin)
        assert r.status_code == 200 and r.json() == {"changed": 1, "status": "approved", "skipped": 0,
                                                     "unchanged": 0}, r.text
        row = review()["valves-02"]
        assert (row["status"], row["verdict"], row["reviewed_by"], row["reviewed_key"]) == (
            "approved", "warn", "test-admin", admin_id)
        assert row["reviewed_at"] is not None
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                       json={"status": "approved", "all": True}, headers=admin)
        assert r.json() == {"changed": 1, "status": "approved", "skipped": 1, "unchanged": 0}, r.text
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",  # nothing passes here
                       json={"status": "approved", "all": True, "verdict": "pass"}, headers=admin)
        assert r.json() == {"changed": 0, "status": "approved", "skipped": 1, "unchanged": 0}, r.text
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",  # the approved warned page is kept
                       json={"status": "approved", "all": True, "verdict": "warn"}, headers=admin)
        assert r.json() == {"changed": 0, "status": "approved", "skipped": 1, "unchanged": 1}, r.text
        assert review()["valves-02"]["reviewed_by"] == "test-admin"
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                       json={"status": "approved", "item_id": "no-such-item", "verdict": "pass"}, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["field"] == "verdict", r.text
        assert review()["pumps-01"]["status"] == "pending"
        page = content(armor[2], "valves-02")
        assert (page["source"], page["fallback"]) == ("armor", None)
        assert content(control[0], "pumps-01")["fallback"] is None
        r = httpx.get(f"{server.url}/v1/experiments/{EXP}/assignment", params={"user_id": armor[3]},
                      headers={"Authorization": f"Bearer {keys['client']}"})
        assert r.status_code == 200
    finally:
        server.stop()
    props = exposures(db)
    pump_copy = control_digest(db, "pumps-01")
    for user in armor[:2]:
        assert (props[user]["page"], props[user]["fallback"]) == (pump_copy, "guardrail")
    assert props[armor[2]]["page"] == warned and "fallback" not in props[armor[2]]
    assert props[control[0]]["page"] == pump_copy
    assert "page" not in props[armor[3]]


def test_a_version_4_row_shape_reads_with_no_checks(tmp_path) -> None:
    """Rows stored before the guardrails (checks and verdict NULL) are served as they were."""
    db = tmp_path / "v.duckdb"
    seed_database(db, items=["pumps-01"])
    con = connect(db)
    try:
        save_generated(con, images_dir_for(db), EXP, "armor", "pumps-01", hand_page("pumps-01"), "p")
        assert set_review(con, EXP, "approved", verdict=None).changed == 1
        row = list_content(con, EXP)[0]
        assert (row.checks, row.verdict, row.failing(), row.public()["failing"]) == (None, None, [], [])
        assert list(approved(con)) == [(EXP, "armor", "pumps-01")]
        assert dataclasses.replace(row, verdict="fail").blocking() == []
    finally:
        con.close()


def test_an_on_demand_picture_is_checked_against_the_pictures_already_served(tmp_path) -> None:
    """The on-demand worker has no database: it is handed the served pages' picture hashes and reads their
    files from the image store, so a new picture that duplicates another item's served one fails."""
    from armor_ab.catalog.demo import demo_items
    from armor_ab.content import on_demand
    from armor_ab.content.generate import resolve_model
    from armor_ab.experiments.content_checks import ContentChecks
    from armor_ab.experiments.models import ContentSpec

    items = {item.id: item for item, _ in demo_items()}
    content = ContentSpec(source="armor", prompt="Describe {name} for our catalog, with pictures.", model="armor-demo",
                          max_images=1)
    off = {"action": "off"}
    policy = ContentChecks(spec_fidelity=off, terms=off, modality=off, image_text=off, text_hygiene=off)
    item = items["pumps-02"]
    prompt = content.prompt.format(name=item.name)
    page, alone = on_demand.generate_page(resolve_model("armor-demo"), "torch", None, prompt, content, 1, item, policy, "armor")
    shas = tuple(image.sha256 for image in page.images)
    assert shas, "armor-demo drew no picture for this seed"
    assert "near-duplicate" not in alone.results[0].reason
    images = tmp_path / "images"
    images.mkdir()
    for image in page.images:  # the same picture, served on another item's page
        (images / f"{image.sha256}.png").write_bytes(image.png)
    on_demand._contexts.clear()  # a fresh worker
    _, again = on_demand.generate_page(resolve_model("armor-demo"), "torch", None, prompt, content, 1, item, policy, "armor",
                                       served=(("valves-01", shas),), images_dir=images)
    [result] = again.results
    assert result.status == "fail" and "near-duplicate of a picture of item valves-01" in result.reason
    assert again.verdict == "fail"

"""On-demand pages through a real server: generated while the visitor waits, or control copy on timeout."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.content import CHECKS_OFF, EXP, users_by_variant
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database

runner = CliRunner()
ITEMS = ["pumps-01", "valves-02", "motors-03", "bearings-04"]


def platform(tmp_path, timeout: float, model: str = "armor-tiny"):
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text(DEMO_EXPERIMENT.read_text().replace(
        'prompt: "Describe {name} for our catalog, with pictures."',
        f'prompt: "Describe {{name}} for our catalog, with pictures.", model: {model}, max_images: 1, on_demand: true')
        + CHECKS_OFF)
    db = tmp_path / "armor_ab.duckdb"
    keys = seed_database(db, yaml_file, items=ITEMS)
    server = Server(db, extra_args=["--on-demand-timeout", str(timeout)]).start()
    return server, keys, users_by_variant(load_experiment_file(yaml_file)), db


def content(server, keys, user: str, item: str) -> dict:
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": item},
                  headers={"Authorization": f"Bearer {keys['client']}"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def review(server, keys) -> dict[str, dict]:
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content/review",
                  headers={"Authorization": f"Bearer {keys['read']}"})
    return {row["item_id"]: row for row in r.json()}


def test_a_missing_page_is_generated_while_the_visitor_waits(tmp_path) -> None:
    server, keys, users, _ = platform(tmp_path, timeout=120)
    try:
        body = content(server, keys, users["armor"], "pumps-01")
        assert (body["source"], body["fallback"]) == ("armor", None)
        assert body["content"]["metadata"]["model"] == "armor-tiny"
        assert "Pump P-01" in body["content"]["metadata"]["prompt"]
        stored = review(server, keys)
        assert set(stored) == {"pumps-01"}  # control visitors and other items generate nothing
        assert stored["pumps-01"]["status"] == "approved" and stored["pumps-01"]["reviewed_at"] is None
        second = content(server, keys, users["armor"], "pumps-01")
        assert second["content"] == body["content"]  # stored once, served from the cache
        assert content(server, keys, users["control"], "valves-02")["source"] == "catalog"
        assert set(review(server, keys)) == {"pumps-01"}
        # Rejecting an on-demand page takes it off the site, and it is not generated again.
        r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                       json={"status": "rejected", "item_id": "pumps-01"},
                       headers={"Authorization": f"Bearer {keys['admin']}"})
        assert r.status_code == 200, r.text
        after = content(server, keys, users["armor"], "pumps-01")
        assert (after["source"], after["fallback"]) == ("catalog", "unapproved")
        assert review(server, keys)["pumps-01"]["status"] == "rejected"
        children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # the database process and the generation worker (and its helpers)
    finally:
        server.stop()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]  # a stopped server leaves nothing behind


def test_a_slow_page_falls_back_to_control_and_goes_live_when_ready(tmp_path) -> None:
    server, keys, users, _ = platform(tmp_path, timeout=0.0)
    try:
        first = content(server, keys, users["armor"], "motors-03")
        assert (first["source"], first["fallback"]) == ("catalog", "generating")
        assert first["content"]["segments"][0]["text"].startswith("Motor")  # control's copy meanwhile
        deadline = time.monotonic() + 120
        body = first
        while body["source"] != "armor" and time.monotonic() < deadline:
            time.sleep(0.5)
            body = content(server, keys, users["armor"], "motors-03")
        assert (body["source"], body["fallback"]) == ("armor", None)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'armor_ab_content_fallback_total{experiment="catalog-interleaved",reason="generating"}' in metrics
        assert list(review(server, keys)) == ["motors-03"]  # one page, however often it was asked for
    finally:
        server.stop()


@pytest.mark.parametrize("model", ["no-such-model"])
def test_a_failing_generation_falls_back_and_is_not_retried_at_once(tmp_path, model) -> None:
    server, keys, users, _ = platform(tmp_path, timeout=120, model=model)
    try:
        first = content(server, keys, users["armor"], "bearings-04")
        assert (first["source"], first["fallback"]) == ("catalog", "generation_failed")
        started = time.monotonic()
        second = content(server, keys, users["armor"], "bearings-04")
        assert second["fallback"] == "generation_failed" and time.monotonic() - started < 5
        assert review(server, keys) == {}
        assert "on-demand generation failed" in server.log.read_text()
    finally:
        server.stop()


def test_serve_refuses_an_engine_backend_without_an_engine(tmp_path) -> None:
    r = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.duckdb"), "--generate-backend", "onnxruntime"])
    assert r.exit_code != 0 and "--engine" in r.output

"""Bounded reads (issue 15, finding 2): a report runs within its own memory and time budget in the
database process, apart from the writer; over it the API answers 503 with a reason in the JSON error
shape, and event batches sent meanwhile all succeed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from armor_ab.reporting.report import experiment_report
from armor_ab.store.db import connect
from armor_ab.store.experiments import list_experiments
from tests.helpers.platform import Server, seed_database

EXPERIMENT = "catalog-interleaved"  # the demo experiment
EVENTS = 300_000


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A database whose report takes a while: 300,000 events of 75,000 visitors over two days."""
    db = tmp_path_factory.mktemp("bounded") / "armor_ab.duckdb"
    keys = seed_database(db, started_days_ago=3)
    con = connect(db)
    try:
        con.execute(f"""
            INSERT INTO events (event_id, experiment, variant, user_id, item_id, type, value, ts, received_at,
                                properties)
            SELECT uuid(), '{EXPERIMENT}', CASE WHEN i % 2 = 0 THEN 'control' ELSE 'armor' END,
                'u' || (i // 4)::VARCHAR, 'item' || (i % 50)::VARCHAR,
                ['exposure', 'page_view', 'dwell', 'inquiry'][i % 4 + 1],
                CASE WHEN i % 4 = 2 THEN 1000.0 + i % 997 END,
                now() - INTERVAL (i % 170000) SECOND, now(),
                '{{"device": "mobile", "category": "c' || (i % 7)::VARCHAR || '"}}'
            FROM range({EVENTS}) r(i)""")
    finally:
        con.close()
    yield db, keys


def _ingest(url: str, key: str, stop: threading.Event, answers: list[int], minimum: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while not stop.is_set() or len(answers) < minimum:
            batch = [{"event_id": str(uuid.uuid4()), "experiment": EXPERIMENT, "variant": "armor",
                      "user_id": f"live-{i}", "type": "page_view"} for i in range(100)]
            answers.append(client.post("/v1/events", json={"events": batch}).status_code)


def test_a_report_over_its_time_budget_answers_503_and_ingestion_goes_on(heavy, tmp_path: Path) -> None:
    db, keys = heavy
    server = Server(db, extra_args=["--report-timeout", "0.05"]).start()
    answers: list[int] = []
    stop = threading.Event()
    writers = [threading.Thread(target=_ingest, args=(server.url, keys["client"], stop, answers, 40)) for _ in range(2)]
    try:
        for t in writers:
            t.start()
        reports = []
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['read']}"},
                          timeout=60) as reader:
            # Three reports computed (the CUPED setting is part of the cache key), then the first again:
            # its refusal is remembered for a while, not paid for twice.
            for cuped in (None, "true", "false", None):
                started = time.monotonic()
                params = {"cuped": cuped} if cuped else {}
                reports.append((reader.get(f"/v1/experiments/{EXPERIMENT}/results", params=params),
                                time.monotonic() - started))
        stop.set()
        for t in writers:
            t.join(60)
    finally:
        stop.set()
        server.stop()
    for answer, seconds in reports:
        assert answer.status_code == 503, answer.text[:300]
        error = answer.json()["error"]
        assert set(error) == {"code", "message", "field"}
        assert error["code"] == "report_timeout" and "0.05 s" in error["message"]
        assert int(answer.headers["Retry-After"]) > 0
        assert seconds < 10  # interrupted, not run to the end
    assert answers and set(answers) == {200}, f"{sum(a != 200 for a in answers)} of {len(answers)} batches failed"
    print(f"\n{len(reports)} reports refused (report_timeout) in "
          f"{max(s for _, s in reports):.2f} s at most; {len(answers)} concurrent batches, all 200")


def test_a_report_within_a_small_memory_budget_spills_and_answers_the_same(heavy, tmp_path: Path) -> None:
    db, keys = heavy
    con = duckdb.connect(str(db), read_only=True)
    try:
        record = next(r for r in list_experiments(con) if r.key == EXPERIMENT)
        expected = experiment_report(con, record)
    finally:
        con.close()
    server = Server(db, extra_args=["--report-memory-limit", "2MB"]).start()
    try:
        got = httpx.get(f"{server.url}/v1/experiments/{EXPERIMENT}/results",
                        headers={"Authorization": f"Bearer {keys['read']}"}, timeout=120)
    finally:
        server.stop()
    assert got.status_code == 200, got.text[:300]
    report = got.json()
    assert report["visitors"] == expected["visitors"]
    assert [r["n"] for r in report["results"]] == [r["n"] for r in expected["results"]]


def test_serve_refuses_a_report_budget_it_cannot_read(tmp_path: Path) -> None:
    for args, message in ((["--report-memory-limit", "lots"], "--report-memory-limit must be a size"),
                          (["--report-timeout", "0"], "--report-timeout must be a positive"),
                          (["--db-memory-limit", "1 gigabyte"], "--db-memory-limit must be a size")):
        done = subprocess.run([sys.executable, "-m", "armor_ab", "serve", "--db", str(tmp_path / "x.duckdb"), *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert message in done.stdout + done.stderr


def test_a_refused_report_is_remembered_for_a_while() -> None:
    import asyncio

    from armor_ab.services.errors import ServiceError
    from armor_ab.services.report_cache import ReportCache

    calls: list[int] = []

    async def refuse() -> bytes:
        calls.append(1)
        raise ServiceError(503, "report_timeout", "the report took longer than its time budget of 1 s",
                           headers={"Retry-After": "30"})

    async def other() -> bytes:
        calls.append(1)
        raise ServiceError(503, "unavailable", "the database cannot do this now")

    async def scenario() -> list[str]:
        cache, codes = ReportCache(refusal_ttl=3600), []
        for key, version, compute in ((("e", None), ("v1",), refuse), (("e", None), ("v1",), refuse),
                                      (("e", None), ("v2",), refuse),  # the spec changed: tried again
                                      (("f", None), ("v1",), other), (("f", None), ("v1",), other)):
            try:
                await cache.get(key, version, compute)
            except ServiceError as exc:
                codes.append(exc.code)
        return codes

    codes = asyncio.run(scenario())
    assert codes == ["report_timeout"] * 3 + ["unavailable"] * 2
    assert len(calls) == 4  # the second ask of (e, v1) cost nothing; an unavailable store is not remembered

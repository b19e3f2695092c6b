"""Acknowledged means durable: SIGKILL the server under load, repeatedly, and count every event."""

from __future__ import annotations

import random
import threading
import time
import uuid

import duckdb
import httpx
import pytest

from tests.helpers.platform import Server, seed_database

pytestmark = pytest.mark.slow
EXP = "catalog-interleaved"
KILLS = 5


def make_batch(rng: random.Random, size: int) -> list[dict]:
    user = f"crash-{rng.randrange(10**9)}"
    return [{"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "experiment": EXP,
             "user_id": user, "type": "dwell", "value": float(rng.randrange(1, 60_000))} for _ in range(size)]


def test_sigkill_loses_no_acknowledged_event_and_retries_add_no_duplicates(tmp_path) -> None:
    db = tmp_path / "crash.duckdb"
    key = seed_database(db)["client"]
    server = Server(db).start()
    acked: dict[str, int] = {}  # event_id -> times the server acknowledged a batch holding it
    pending: list[list[dict]] = []  # batches sent without an answer: their fate is unknown
    lock = threading.Lock()
    stop = threading.Event()

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=10.0) as client:
            while not stop.is_set():
                batch = make_batch(rng, rng.choice([1, 10, 50, 100]))
                try:
                    r = client.post(f"{server.url}/v1/events", json={"events": batch}, headers=headers)
                except httpx.HTTPError:
                    with lock:
                        pending.append(batch)
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    with lock:
                        for e in batch:
                            acked[e["event_id"]] = acked.get(e["event_id"], 0) + 1
                else:
                    with lock:
                        pending.append(batch)

    threads = [threading.Thread(target=sender, args=(s,), daemon=True) for s in range(4)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.8, 2.0))
            server.kill()
            time.sleep(0.2)
            server.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    # Retry every unacknowledged batch with the same ids, as a client would.
    headers = {"Authorization": f"Bearer {key}"}
    retried_ids: set[str] = set()
    with httpx.Client(timeout=30.0) as client:
        for batch in pending:
            r = client.post(f"{server.url}/v1/events", json={"events": batch}, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["accepted"] + body["duplicates"] == len(batch)
            retried_ids.update(e["event_id"] for e in batch)
    server.stop()

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT event_id::VARCHAR, count(*) FROM events WHERE type = 'dwell' GROUP BY ALL").fetchall()
    con.close()
    stored = dict(rows)
    assert len(acked) > 500, "the load was too light to mean anything"
    assert len(pending) > 0 or KILLS == 0
    missing = [e for e in acked if e not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert all(n == 1 for n in stored.values()), "an event was stored twice"
    # Nothing appears that nobody sent; everything sent is there once.
    assert set(stored) == set(acked) | retried_ids

"""A full disk under a running server (issue 15, finding 3): 503 with Retry-After, ``/healthz``
``degraded`` with the cause, and recovery by itself once space is freed, with every acknowledged
batch in the database.

The database lives on a small tmpfs mounted for the test (root only, as here and in CI); where
mounting is impossible the tests skip and say why.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from armor_ab.store.process import StoreClient, query
from armor_ab.store.writer import WriteFailedError
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database
from tests.helpers.store import rows

DISK_MB = 64
EXPERIMENT = "catalog-interleaved"  # the demo experiment (DEMO_EXPERIMENT)
RECOVERY_S = 30.0  # the writer probes every 2 s at most; this leaves room for a busy machine


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 64 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command on this machine")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # a straggler still holds a file


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """A file taking all the free space of ``disk`` but ``leave_bytes``."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        for chunk in (1 << 20, 1 << 12):
            while True:
                st = os.statvfs(disk)
                if st.f_bavail * st.f_frsize - chunk < leave_bytes:
                    break
                try:
                    fh.write(b"\1" * chunk)
                    fh.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler


def event(user: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "experiment": EXPERIMENT, "user_id": user, "type": "dwell", "value": 1200.0}


def stored_ids(batch: list[dict], answer: httpx.Response) -> list[str]:
    """The ids a 200 answer acknowledged: the batch but the events it refused one by one (if any)."""
    refused = {r["index"] for r in answer.json().get("refused", [])}
    return [e["event_id"] for i, e in enumerate(batch) if i not in refused]


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_full_disk_answers_503_says_degraded_and_recovers_without_a_restart(small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "armor_ab.duckdb"
    keys = seed_database(db, DEMO_EXPERIMENT)
    # The server's log goes beside tmp_path's stand-in path (the last --db wins): a full disk must
    # fail the database's writes, and the log must still tell what happened.
    server = Server(tmp_path / "server.duckdb", extra_args=["--db", str(db)]).start()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['client']}"}, timeout=30)
    acknowledged: list[str] = []
    answers: list[httpx.Response] = []

    def post(n: int = 200) -> httpx.Response:
        batch = [event(f"v{i % 50}") for i in range(n)]
        answer = client.post("/v1/events", json={"events": batch})
        answers.append(answer)
        if answer.status_code == 200:
            acknowledged.extend(stored_ids(batch, answer))
        return answer

    def health() -> httpx.Response:
        return httpx.get(f"{server.url}/healthz", timeout=10)

    try:
        assert post().status_code == 200 and health().json()["status"] == "ok"
        filler = fill(small_disk)
        during = [post() for _ in range(20)]
        refused = [a for a in during if a.status_code != 200]
        assert refused, "a full disk must refuse batches"
        for answer in refused:  # never a 500, never a silent 200
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["error"]["code"] == "unavailable"
            assert set(answer.json()["error"]) >= {"code", "message", "field"}
        degraded = health()
        assert degraded.status_code == 503
        assert degraded.json()["status"] == "degraded"
        assert "No space left on device" in degraded.json()["cause"]
        assert str(small_disk) not in degraded.json()["cause"]  # no server paths on a public endpoint
        # Pages go on: assignments answer, their exposures are deferred (logged again later).
        visitors = [f"fault-visitor-{i}" for i in range(20)]
        for user in visitors:
            got = client.get(f"/v1/experiments/{EXPERIMENT}/assignment", params={"user_id": user})
            assert got.status_code == 200, got.text
        time.sleep(0.5)  # their exposure rows reach the writer, and fail there
        assert health().json()["status"] == "degraded"

        filler.unlink()
        started = time.monotonic()
        assert wait_until(lambda: post(20).status_code == 200 and health().status_code == 200, RECOVERY_S), \
            f"no recovery within {RECOVERY_S} s: {answers[-1].status_code} {answers[-1].text}"
        recovered_after = time.monotonic() - started
        assert health().json() | {"writer_queue": 0} == {
            "status": "ok", "cause": None, "writer_alive": True, "writer_queue": 0, "experiments": 1}
        assert all(post().status_code == 200 for _ in range(5))
        for user in visitors:  # the deferred exposures are logged on the visitors' next requests
            assert client.get(f"/v1/experiments/{EXPERIMENT}/assignment", params={"user_id": user}).status_code == 200
        time.sleep(1.0)
    finally:
        client.close()
        server.stop()
    assert recovered_after < RECOVERY_S
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = {r[0] for r in con.execute("SELECT event_id::VARCHAR FROM events WHERE type = 'dwell'").fetchall()}
        exposed = {r[0] for r in con.execute("SELECT user_id FROM events WHERE type = 'exposure'").fetchall()}
    finally:
        con.close()
    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged events lost"
    assert set(visitors) <= exposed
    assert all(a.status_code in (200, 503) for a in answers)
    print(f"\nfull disk: {len(refused)} of {len(during)} batches refused with 503; recovered "
          f"{recovered_after:.2f} s after space was freed; {len(acknowledged)} acknowledged events all stored")


def test_an_invalidated_database_is_reopened_and_keeps_every_acknowledged_batch(small_disk: Path) -> None:
    """A checkpoint that cannot write makes DuckDB invalidate the database ("database has been
    invalidated because of a previous fatal error"): the writer closes and reopens the file itself."""
    db = small_disk / "reopen.duckdb"
    store = StoreClient(db)
    acknowledged: list[str] = []
    outcomes: list[str] = []
    try:
        while not (db.parent / (db.name + ".wal")).exists() or (db.parent / (db.name + ".wal")).stat().st_size < 8 << 20:
            batch = rows(5000)
            store.submit(batch).result(30)
            acknowledged += [r[0] for r in batch]
        # Room for the WAL to grow, not for the checkpoint that follows at 16 MB of WAL.
        filler = fill(small_disk, leave_bytes=10 << 20)
        for _ in range(60):
            batch = rows(2000)
            try:
                store.submit(batch).result(30)
                acknowledged += [r[0] for r in batch]
                outcomes.append("ok")
            except WriteFailedError as exc:
                outcomes.append(exc.cause)
            if "invalidated" in outcomes[-1]:
                break
        assert any("invalidated" in o or "checkpoint" in o for o in outcomes), outcomes
        assert store.fault is not None
        with pytest.raises(WriteFailedError):  # refused at once while the disk is full
            store.submit(rows(10)).result(30)
        filler.unlink()
        assert wait_until(lambda: store.fault is None, RECOVERY_S), store.fault
        batch = rows(100)
        assert store.submit(batch).result(30) == (100, 0)
        acknowledged += [r[0] for r in batch]
        stored = {r[0] for r in store.read(query, "SELECT event_id::VARCHAR FROM events").result(30)}
    finally:
        store.close()
    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged events lost"

"""Slow and idle clients against a real ``armor-ab serve`` (small timeouts): partial request lines,
trickled headers, stalled and trickled bodies, idle connections and the connection limit are cut
within their timeout, while another client is served as usual during the attack."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.platform import Platform, Server, seed_database

EXP = "catalog-interleaved"
HEADER_TIMEOUT = BODY_TIMEOUT = KEEP_ALIVE = 1.0
SLACK = 2.5  # the machine is shared: a timer may fire late, never early
LIMITS = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
          "--keep-alive-timeout", str(KEEP_ALIVE)]


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> Iterator[Platform]:
    db = tmp_path_factory.mktemp("slow") / "armor_ab.duckdb"
    keys = seed_database(db)
    server = Server(db, extra_args=[*LIMITS, "--max-connections", "400"]).start()
    try:
        yield Platform(db, server, keys["admin"], keys["read"], keys["client"])
    finally:
        server.stop()


def _connect(plat: Platform, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", plat.server.port), timeout=10)
    if first:
        s.sendall(first)
    return s


def _until_closed(socks: list[socket.socket], limit: float, started: float | None = None,
                  ) -> dict[socket.socket, tuple[float, bytes]]:
    """Read every socket until the server closes it (or ``limit`` seconds pass): (seconds since
    ``started``, bytes read)."""
    started = started or time.monotonic()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    done: dict[socket.socket, tuple[float, bytes]] = {}
    while len(done) < len(socks) and time.monotonic() - started < limit:
        for key, _ in sel.select(timeout=0.1):
            s, buf = key.fileobj, key.data
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BlockingIOError) as exc:
                chunk = b"" if isinstance(exc, ConnectionResetError) else None
            if chunk is None:
                continue
            if chunk:
                buf += chunk
                continue
            done[s] = (time.monotonic() - started, bytes(buf))
            sel.unregister(s)
    sel.close()
    return done


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


class _Steady(threading.Thread):
    """Another client, asking for assignments all along: its latencies and statuses."""

    def __init__(self, plat: Platform) -> None:
        super().__init__(daemon=True)
        self.plat, self.stop, self.seen = plat, threading.Event(), []

    def run(self) -> None:
        with httpx.Client(base_url=self.plat.url, headers=self.plat.headers(), timeout=10) as c:
            i = 0
            while not self.stop.is_set():
                t = time.monotonic()
                r = c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": f"steady-{i}"})
                self.seen.append((r.status_code, time.monotonic() - t))
                i += 1
                time.sleep(0.02)


def test_partial_request_lines_are_cut_while_others_are_served(slow: Platform) -> None:
    steady = _Steady(slow)
    steady.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        attack = [_connect(slow, b"GET /v1/experiments/catalog-interl") for _ in range(300)]
        idle = [_connect(slow) for _ in range(20)]  # connected, never a byte
        connected = time.monotonic() - started
        closed = _until_closed(attack + idle, HEADER_TIMEOUT + SLACK + 5, started)
    finally:
        steady.stop.set()
        steady.join()
    assert len(closed) == len(attack) + len(idle), "some connections were never cut"
    assert max(t for t, _ in closed.values()) < HEADER_TIMEOUT + connected + SLACK
    assert min(t for t, _ in closed.values()) >= HEADER_TIMEOUT * 0.9  # cut by the timeout, not before
    status, body = _answer(closed[attack[0]][1])
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert all(closed[s][1] == b"" for s in idle)  # nothing was asked: closed without an answer
    assert len(steady.seen) >= 10 and {s for s, _ in steady.seen} == {200}
    assert max(t for _, t in steady.seen) < 1.0


def test_headers_trickled_are_cut_at_the_header_deadline(slow: Platform) -> None:
    """A byte every 50 ms keeps no connection alive: the deadline is for the whole header block."""
    s = _connect(slow)
    started = time.monotonic()
    s.settimeout(0.05)
    raw = b""
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
        try:
            s.sendall(bytes([byte]))
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        raw += chunk
        if not chunk:
            break
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK
    assert _answer(raw)[0] == 408


def _post(path: str, length: int, auth: str, sent: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode() + sent


@pytest.mark.parametrize("path,scope", [("/v1/events", "client"), ("/v1/power", "read")])
def test_a_stalled_body_answers_408_in_the_json_shape(slow: Platform, path: str, scope: str) -> None:
    """The fast path (events) and a FastAPI route (power) alike."""
    socks = [_connect(slow, _post(path, 1024 * 1024, getattr(slow, f"{scope}_key"), b'{"events": [')) for _ in range(20)]
    closed = _until_closed(socks, BODY_TIMEOUT + SLACK + 5)
    assert len(closed) == len(socks)
    assert max(t for t, _ in closed.values()) < BODY_TIMEOUT + SLACK
    for _, raw in closed.values():
        status, body = _answer(raw)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert b"connection: close" in raw.lower()
        assert b"x-request-id" in raw.lower()  # answered by the API itself, not the connection's backstop


def test_a_body_at_one_byte_a_tick_is_cut(slow: Platform) -> None:
    s = _connect(slow, _post("/v1/events", 10_000, slow.client_key))
    started = time.monotonic()
    raw = b""
    s.settimeout(0.05)
    while time.monotonic() - started < BODY_TIMEOUT + SLACK + 5:
        try:
            s.sendall(b" ")
        except OSError:
            break
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
        except TimeoutError:
            pass
        except OSError:
            break
    assert time.monotonic() - started < BODY_TIMEOUT + SLACK
    assert _answer(raw)[0] == 408


def test_an_unread_body_does_not_hold_the_connection(slow: Platform) -> None:
    """A route that never reads the body answers at once; the trickled rest is cut at the body deadline."""
    s = _connect(slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    started = time.monotonic()
    s.settimeout(0.1)
    raw, closed_at = b"", None
    while time.monotonic() - started < BODY_TIMEOUT + SLACK + 5:
        try:
            s.sendall(b"x")
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            closed_at = time.monotonic() - started
            break
        if not chunk:
            closed_at = time.monotonic() - started
            break
        raw += chunk
    assert raw.startswith(b"HTTP/1.1 200")
    assert closed_at is not None and closed_at < BODY_TIMEOUT + 1.0 + SLACK


def test_an_idle_kept_alive_connection_is_closed(slow: Platform) -> None:
    s = _connect(slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    closed = _until_closed([s], KEEP_ALIVE + SLACK + 5)
    assert s in closed and closed[s][0] < KEEP_ALIVE + SLACK
    assert closed[s][1].startswith(b"HTTP/1.1 200")


def test_malformed_and_oversized_requests_answer_in_the_json_shape(slow: Platform) -> None:
    bad = _connect(slow, b"NOT HTTP AT ALL\r\n\r\n")
    huge = _connect(slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    closed = _until_closed([bad, huge], SLACK + 5)
    status, body = _answer(closed[bad][1])
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = _answer(closed[huge][1])
    assert status == 431 and body["error"]["code"] == "request_header_fields_too_large"


def test_the_connection_limit_answers_503_beyond_it(tmp_path) -> None:
    db = tmp_path / "limit.duckdb"
    keys = seed_database(db)
    server = Server(db, extra_args=["--header-timeout", "30", "--max-connections", "5"]).start()
    try:
        time.sleep(0.5)  # the start-up probe's connection is gone
        held = [_connect(Platform(db, server, "", "", "")) for _ in range(5)]
        time.sleep(0.3)
        over = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        over.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        closed = _until_closed([over], 5)
        status, body = _answer(closed[over][1])
        assert status == 503 and body["error"]["code"] == "unavailable"
        for s in held:
            s.close()
        time.sleep(0.3)
        r = httpx.get(f"{server.url}/v1/experiments/{EXP}/assignment", params={"user_id": "after"},
                      headers={"Authorization": f"Bearer {keys['client']}"})
        assert r.status_code == 200
    finally:
        server.stop()

"""The HTTP API end to end: a real server process on loopback over a real DuckDB file."""

from __future__ import annotations

import hashlib
import uuid

import duckdb
import httpx
import pytest

from armor_ab.events import exposure_event_id
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.platform import DEMO_EXPERIMENT, Platform, Server, seed_database

EXP = "catalog-interleaved"


def event(**overrides) -> dict:
    base = {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": "control", "user_id": "u-1",
            "item_id": "pump-01", "type": "page_view"}
    return {**base, **overrides}


def test_assignment_matches_the_pure_function_and_is_stable(platform: Platform) -> None:
    spec = load_experiment_file(DEMO_EXPERIMENT)
    assigner = Assigner.from_experiment(spec)
    with platform.client() as c:
        for i in range(40):
            user = f"visitor-{i}"
            body = c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": user, "item_id": "x"}).json()
            assert body == {"experiment": EXP, "variant": assigner.assign(user).variant, "in_experiment": True,
                            "exposure_id": str(exposure_event_id(EXP, 0, user))}
            again = c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": user}).json()
            assert again == body


def test_first_exposure_is_logged_once(platform: Platform) -> None:
    user = f"exposed-{uuid.uuid4()}"
    with platform.client() as c:
        for _ in range(3):
            assert c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": user, "item_id": "a"}).status_code == 200
        # A retry of the same exposure through the events endpoint is also a no-op by id.
    metrics = httpx.get(f"{platform.url}/metrics").text
    assert "armor_ab_events_committed_total" in metrics
    platform.server.stop()
    try:
        con = duckdb.connect(str(platform.db), read_only=True)
        rows = con.execute(
            "SELECT type, variant, item_id FROM events WHERE user_id = ? AND experiment = ?", [user, EXP]
        ).fetchall()
        con.close()
    finally:
        platform.server.start()
    assert len(rows) == 1 and rows[0][0] == "exposure" and rows[0][2] == "a"


def test_events_accepted_then_duplicates_on_retry(platform: Platform) -> None:
    batch = {"events": [event(), event(type="dwell", value=1234.5), event(type="inquiry", value=99.0),
                        event(type="inquiry")]}
    with platform.client() as c:
        first = c.post("/v1/events", json=batch)
        assert first.status_code == 200, first.text
        assert first.json() == {"accepted": 4, "duplicates": 0}
        retry = c.post("/v1/events", json=batch)
        assert retry.json() == {"accepted": 0, "duplicates": 4}
        mixed = c.post("/v1/events", json={"events": [batch["events"][0], event()]})
        assert mixed.json() == {"accepted": 1, "duplicates": 1}
        same_twice = event()
        inside = c.post("/v1/events", json={"events": [same_twice, same_twice]})
        assert inside.json() == {"accepted": 1, "duplicates": 1}


def test_scopes_and_keys(platform: Platform) -> None:
    path = f"/v1/experiments/{EXP}/assignment"
    assert httpx.get(platform.url + path, params={"user_id": "u"}).status_code == 401
    bad = httpx.get(platform.url + path, params={"user_id": "u"}, headers={"Authorization": "Bearer aab_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    with platform.client("read") as c:  # a dashboard key cannot write events
        r = c.post("/v1/events", json={"events": [event()]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    with platform.client("client") as c:  # a publishable key cannot read results or administer
        assert c.get("/v1/experiments").status_code == 403
        assert c.post("/v1/keys", json={"scope": "admin"}).status_code == 403
    with platform.client("admin") as c:
        created = c.post("/v1/keys", json={"scope": "client", "name": "shop"})
        assert created.status_code == 201
        secret, key_id = created.json()["key"], created.json()["key_id"]
        assert secret.startswith(f"aab_{key_id}_")
        listed = c.get("/v1/keys").json()
        assert key_id in {k["key_id"] for k in listed} and all("key" not in k for k in listed)
        ok = httpx.get(platform.url + path, params={"user_id": "u"}, headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
        assert c.delete(f"/v1/keys/{key_id}").status_code == 204
        gone = httpx.get(platform.url + path, params={"user_id": "u"}, headers={"Authorization": f"Bearer {secret}"})
        assert gone.status_code == 401


def test_forced_variant_needs_admin_and_logs_nothing(platform: Platform) -> None:
    path = f"/v1/experiments/{EXP}/assignment"
    with platform.client("client") as c:
        r = c.get(path, params={"user_id": "qa", "force_variant": "armor"})
        assert r.status_code == 403 and r.json()["error"]["field"] == "force_variant"
    with platform.client("admin") as c:
        r = c.get(path, params={"user_id": "qa", "force_variant": "armor"})
        assert r.json() == {"experiment": EXP, "variant": "armor", "in_experiment": True, "exposure_id": None}
        r = c.get(path, params={"user_id": "qa", "force_variant": "nope"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_variant"


def test_lifecycle_and_rebucketing_through_the_api(platform: Platform) -> None:
    yaml_text = DEMO_EXPERIMENT.read_text().replace("key: catalog-interleaved", "key: api-made").replace(
        "hash_seed: catalog-interleaved", "hash_seed: api-made")
    with platform.client("admin") as c:
        created = c.post("/v1/experiments", content=yaml_text, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "draft"
        # Not running: nobody is in it, and nothing is logged.
        r = c.get("/v1/experiments/api-made/assignment", params={"user_id": "u1"}).json()
        assert r == {"experiment": "api-made", "variant": None, "in_experiment": False, "exposure_id": None}
        assert c.post("/v1/experiments/api-made/start").json()["status"] == "running"
        assert c.post("/v1/experiments/api-made/start").status_code == 409
        before = {u: c.get("/v1/experiments/api-made/assignment", params={"user_id": u}).json()["variant"]
                  for u in (f"u{i}" for i in range(200))}
        changed = yaml_text.replace("weight: 0.5, content: {source: catalog}", "weight: 0.2, content: {source: catalog}")
        changed = changed.replace("{key: armor, weight: 0.5", "{key: armor, weight: 0.8")
        refused = c.put("/v1/experiments/api-made", content=changed, headers={"Content-Type": "application/yaml"})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "running_experiment_reassignment"
        rebucketed = c.put("/v1/experiments/api-made", params={"new_bucket_version": "true"}, content=changed,
                           headers={"Content-Type": "application/yaml"})
        assert rebucketed.status_code == 200 and rebucketed.json()["bucket_version"] == 1
        after = {u: c.get("/v1/experiments/api-made/assignment", params={"user_id": u}).json()["variant"]
                 for u in before}
        assert before != after  # re-seeded
        assert sum(v == "armor" for v in after.values()) > sum(v == "armor" for v in before.values())
        assert c.post("/v1/experiments/api-made/stop").json()["status"] == "stopped"
        r = c.get("/v1/experiments/api-made/assignment", params={"user_id": "u1"}).json()
        assert r["variant"] is None


def test_cors_allow_list(platform: Platform) -> None:
    path = f"{platform.url}/v1/experiments/{EXP}/assignment"
    pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    ok = httpx.options(path, headers={"Origin": "https://shop.example.com", **pre})
    assert ok.headers.get("access-control-allow-origin") == "https://shop.example.com"
    other = httpx.options(path, headers={"Origin": "https://evil.example.net", **pre})
    assert "access-control-allow-origin" not in other.headers
    assert other.status_code == 400 and other.json()["error"]["code"] == "cors_refused"  # the JSON shape
    # CORS opens the client routes only: keys, results and metrics grant no origin (tests/test_cors.py).
    for admin_path in ("/v1/keys", f"/v1/experiments/{EXP}/results", "/metrics"):
        refused = httpx.options(f"{platform.url}{admin_path}", headers={"Origin": "https://shop.example.com", **pre})
        assert "access-control-allow-origin" not in refused.headers and refused.status_code == 405


def test_metrics_and_health(platform: Platform) -> None:
    with platform.client() as c:
        c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": "m"})
    text = httpx.get(f"{platform.url}/metrics").text
    for name in ("armor_ab_requests_total", "armor_ab_request_duration_seconds_bucket",
                 "armor_ab_writer_queue_depth", "armor_ab_events_committed_total"):
        assert name in text
    assert 'route="/v1/experiments/{key}/assignment"' in text
    health = httpx.get(f"{platform.url}/healthz").json()
    assert health["status"] == "ok" and health["writer_alive"] is True


def test_second_server_on_the_same_file_is_refused(platform: Platform) -> None:
    with pytest.raises(RuntimeError, match="in use by another process"):
        Server(platform.db).start(timeout=30)


def test_outside_coverage_gets_no_variant_and_no_exposure(tmp_path) -> None:
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(DEMO_EXPERIMENT.read_text().replace("coverage: 1.0", "coverage: 0.3"))
    db = tmp_path / "n.duckdb"
    keys = seed_database(db, narrow)
    server = Server(db).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['client']}"}) as c:
            answers = [c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": f"v{i}"}).json()
                       for i in range(300)]
    finally:
        server.stop()
    outside = [a for a in answers if not a["in_experiment"]]
    assert 150 < len(outside) < 270 and all(a["variant"] is None for a in outside)
    con = duckdb.connect(str(db), read_only=True)
    exposures = con.execute("SELECT count(*) FROM events WHERE type = 'exposure'").fetchone()[0]
    con.close()
    assert exposures == 300 - len(outside)


def test_openapi_documents_every_route_and_schema(platform: Platform) -> None:
    spec = httpx.get(f"{platform.url}/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/v1/experiments/{key}/assignment", "get"), ("/v1/events", "post"),
                         ("/v1/experiments", "post"), ("/v1/experiments/{key}/start", "post"),
                         ("/v1/experiments/{key}/results", "get"), ("/v1/keys", "post"), ("/healthz", "get"),
                         ("/metrics", "get")]:
        op = paths[path][method]
        assert op.get("description") or op.get("summary"), f"{method} {path} has no description"
    assert {p["name"] for p in paths["/v1/experiments/{key}/assignment"]["get"]["parameters"]} >= {
        "key", "user_id", "item_id", "force_variant"}
    schemas = spec["components"]["schemas"]
    assert {"EventBatch", "EventIn", "ExperimentSpec", "Variant", "ErrorPublic"} <= set(schemas)

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(spec):
        assert ref.split("/")[-1] in schemas, f"dangling {ref}"
    assert httpx.get(f"{platform.url}/docs").status_code == 200


def test_server_exposures_carry_segments(tmp_path) -> None:
    """Analysis reads segments from the first exposure, so the server's own exposure row has them."""
    db = tmp_path / "seg.duckdb"
    keys = seed_database(db)
    server = Server(db).start()
    try:
        h = {"Authorization": f"Bearer {keys['client']}"}
        phone = {**h, "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"}
        httpx.get(f"{server.url}/v1/experiments/{EXP}/assignment", params={"user_id": "p", "item_id": "pumps-01"},
                  headers=phone)
        httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": "d", "item_id": "valves-02"},
                  headers={**h, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
        httpx.get(f"{server.url}/v1/experiments/{EXP}/assignment", params={"user_id": "n"}, headers=h)
    finally:
        server.stop()
    con = duckdb.connect(str(db), read_only=True)
    props = dict(con.execute("SELECT user_id, properties::VARCHAR FROM events WHERE type = 'exposure'").fetchall())
    con.close()
    import json as _json

    assert _json.loads(props["p"]) == {"category": "pumps", "device": "mobile"}
    # …/content's exposure also names the page served (here control's copy: no page is generated) and why.
    from armor_ab.content.control import control_content
    from armor_ab.services.state import json_bytes
    from armor_ab.store.catalog import get_item

    con = duckdb.connect(str(db), read_only=True)
    copy = hashlib.sha256(json_bytes(control_content(get_item(con, "valves-02")))).hexdigest()
    con.close()
    assert _json.loads(props["d"]) == {"category": "valves", "device": "desktop", "page": copy,
                                       "fallback": "missing"}  # d is in the armor variant
    assert _json.loads(props["n"]) == {"device": "desktop"}  # httpx's own agent; no item, no category


def test_report_cache_serves_until_events_or_the_experiment_change() -> None:
    import asyncio

    from armor_ab.services.report_cache import ReportCache

    calls = []

    async def compute() -> bytes:
        calls.append(1)
        return f'{{"n": {len(calls)}}}'.encode()

    async def scenario() -> list[bytes]:
        cache = ReportCache(max_age=0.0)  # under traffic, recompute at once
        out = [(await cache.get(("e", None), ("v1",), compute, events=10))[0],
               (await cache.get(("e", None), ("v1",), compute, events=10))[0],  # nothing changed: cached
               (await cache.get(("e", None), ("v1",), compute, events=11))[0],  # an event arrived
               (await cache.get(("e", True), ("v1",), compute, events=11))[0]]  # another CUPED setting
        slow = ReportCache(max_age=3600)
        out.append((await slow.get(("e", None), ("v1",), compute, events=1))[0])
        out.append((await slow.get(("e", None), ("v1",), compute, events=2))[0])  # young enough: served
        out.append((await slow.get(("e", None), ("v2",), compute, events=2))[0])  # spec edited: never stale
        results = await asyncio.gather(*(ReportCache().get(("x", None), ("v", 0), compute) for _ in range(1)))
        return out + [results[0][0]]

    out = asyncio.run(scenario())
    assert out[:4] == [b'{"n": 1}', b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert out[4] == out[5] == b'{"n": 4}'
    assert out[6] == b'{"n": 5}'
    assert len(calls) == 6

"""CORS opens the client routes only (the ones web pages call: assignment, content, events, the beacon,
the snippet); keys, results, metrics and every other route grant no origin, and their preflight is
refused. A refused preflight answers in the JSON error shape."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from armor_ab.services.state import ServerSettings
from armor_ab.web.server import create_server
from tests.helpers.platform import seed_database

EXP = "catalog-interleaved"
SHOP, EVIL = "https://shop.example.com", "https://evil.example.net"


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "fastapi-only"])
def client(request, tmp_path_factory):
    db = tmp_path_factory.mktemp("cors") / "cors.duckdb"
    keys = seed_database(db)
    with TestClient(create_server(ServerSettings(db_path=db, cors_origins=(SHOP,), fast_path=request.param))) as c:
        yield c, keys


def _preflight(c, path: str, origin: str = SHOP, method: str = "GET", headers: str = "authorization"):
    return c.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                    "Access-Control-Request-Headers": headers})


CLIENT_ROUTES = [("GET", f"/v1/experiments/{EXP}/assignment"), ("GET", f"/v1/experiments/{EXP}/content"),
                 ("POST", "/v1/events"), ("POST", "/v1/events/beacon"), ("GET", "/v1/sdk/armor-ab.js")]
OTHER_ROUTES = [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("GET", f"/v1/experiments/{EXP}/results"),
                ("GET", "/metrics"), ("GET", "/v1/experiments"), ("POST", "/v1/experiments"),
                ("GET", f"/v1/experiments/{EXP}/content/review"), ("GET", "/healthz")]


def test_client_routes_grant_the_allowed_origin(client) -> None:
    c, keys = client
    for method, path in CLIENT_ROUTES:
        ok = _preflight(c, path, method=method)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == SHOP, path
    auth = {"Authorization": f"Bearer {keys['client']}", "Origin": SHOP}
    event = {"event_id": str(uuid.uuid4()), "experiment": EXP, "user_id": "c", "type": "page_view"}
    answers = [
        c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": "u"}, headers=auth),
        c.get(f"/v1/experiments/{EXP}/content", params={"user_id": "u", "item_id": "pumps-01"}, headers=auth),
        c.post("/v1/events", content=json.dumps({"events": [event]}), headers=auth),
        c.post("/v1/events/beacon", params={"key": keys["client"]}, content=json.dumps({"events": [event]}),
               headers={"Origin": SHOP, "Content-Type": "text/plain"}),
        c.get("/v1/sdk/armor-ab.js", headers={"Origin": SHOP}),
    ]
    for r in answers:
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == SHOP, r.request.url


def test_other_routes_grant_no_origin_and_refuse_the_preflight(client) -> None:
    c, keys = client
    for method, path in OTHER_ROUTES:
        pre = _preflight(c, path, method=method)
        assert "access-control-allow-origin" not in pre.headers, path
        assert pre.status_code == 405 and pre.json()["error"]["code"] == "method_not_allowed", path
    for path, scope in (("/v1/keys", "admin"), (f"/v1/experiments/{EXP}/results", "read"), ("/metrics", None),
                        ("/v1/experiments", "read")):
        headers = {"Origin": SHOP, **({"Authorization": f"Bearer {keys[scope]}"} if scope else {})}
        r = c.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
        assert "access-control-allow-origin" not in r.headers, path


def test_a_refused_preflight_answers_in_the_json_shape(client) -> None:
    c, _ = client
    path = f"/v1/experiments/{EXP}/assignment"
    for refused, what in ((_preflight(c, path, origin=EVIL), "origin"),
                          (_preflight(c, path, headers="x-secret"), "headers"),
                          (_preflight(c, path, method="PATCH"), "method")):
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
        assert "access-control-allow-origin" not in refused.headers
        error = refused.json()["error"]
        assert error["code"] == "cors_refused" and what in error["message"]


def test_other_origins_get_no_grant_on_client_routes(client) -> None:
    c, keys = client
    r = c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": "u"},
              headers={"Authorization": f"Bearer {keys['client']}", "Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "Origin" in r.headers["vary"]

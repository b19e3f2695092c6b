"""The ASGI fast path (``api/fastpath.py``) answers every route it serves exactly as the documented
FastAPI route does: assignment, content and events, success and every error, byte for byte but the
server's clock, and the headers a client acts on. Both sides call the same services; these tests
keep a door from drifting away from the other."""

from __future__ import annotations

import json
import shutil
import uuid

from fastapi.testclient import TestClient
from PIL import Image

from armor_ab.api.app import create_app
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
from armor_ab.services.state import ServerSettings
from armor_ab.store.content import images_dir_for, save_generated, set_review
from armor_ab.store.db import connect
from tests.helpers.content import users_by_variant
from tests.helpers.platform import DEMO_EXPERIMENT, seed_database

EXP = "catalog-interleaved"
HEADERS = ("content-type", "www-authenticate", "retry-after", "vary")


def _comparable(response) -> tuple:
    """Status, the JSON body without the server's clock, and the headers a client acts on."""
    body = response.json()
    if isinstance(body, dict):
        body.pop("server_time", None)
    return response.status_code, body, tuple(response.headers.get(h) for h in HEADERS)


def _answers(db, requests, tmp_path) -> dict[bool, list[tuple]]:
    """Each app (fast path on, off) over its own copy of ``db``, asked the same requests in order."""
    out = {}
    for fast in (True, False):
        copy = tmp_path / f"{db.stem}-{fast}.duckdb"
        shutil.copy(db, copy)  # the copies share the images/ folder beside them
        with TestClient(create_app(ServerSettings(db_path=copy, fast_path=fast))) as client:
            out[fast] = [_comparable(request(client)) for request in requests]
    return out


def _auth(keys: dict[str, str], who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    if who == "bad":
        return {"Authorization": "Bearer aab_000000000000_x"}
    if who == "basic":
        return {"Authorization": f"Basic {keys['client']}"}
    return {"Authorization": f"Bearer {keys[who]}"}


def test_assignment_answers_alike(tmp_path) -> None:
    db = tmp_path / "fp.duckdb"
    keys = seed_database(db)
    cases = [
        ("client", EXP, {"user_id": "a"}), ("client", EXP, {"user_id": "b", "item_id": "i"}),
        (None, EXP, {"user_id": "a"}), ("bad", EXP, {"user_id": "a"}), ("basic", EXP, {"user_id": "a"}),
        ("read", EXP, {"user_id": "a"}), ("client", "nope", {"user_id": "a"}), ("client", EXP, {}),
        ("client", EXP, {"user_id": ""}), ("client", EXP, {"user_id": "x" * 201}),
        ("client", EXP, {"user_id": "a", "item_id": "y" * 201}),
        ("client", EXP, {"user_id": "a", "force_variant": "armor"}),
        ("admin", EXP, {"user_id": "a", "force_variant": "armor"}),
        ("admin", EXP, {"user_id": "a", "force_variant": "zzz"}),
        ("client", EXP, {"user_id": "ü ñ+%/x"}),  # escaped query strings take the standard parser
        ("client", EXP, {"user_id": "a\x00b"}), ("client", EXP, {"user_id": "a", "item_id": "tab\tbed"}),
    ]
    requests = [lambda c, w=who, k=key, p=params: c.get(f"/v1/experiments/{k}/assignment", params=p,
                                                         headers=_auth(keys, w))
                for who, key, params in cases]
    answers = _answers(db, requests, tmp_path)
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [200, 200, 401, 401, 401, 403, 404, 422, 422, 422, 422, 403, 200, 422, 200,
                                           422, 422]


def _with_pages(db) -> None:
    """An approved page (pumps-01) and a pending one (valves-02) of the armor variant."""
    con = connect(db)
    try:
        for item, status in (("pumps-01", "approved"), ("valves-02", "pending")):
            page = InterleavedContent(
                [TextSegment(f"{item}: made by hand."), ImageSegment.from_pil(Image.new("RGB", (64, 64), "teal"))],
                ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt=f"Describe {item}"))
            save_generated(con, images_dir_for(db), EXP, "armor", item, page, f"Describe {item}")
            set_review(con, EXP, status, item_id=item)
    finally:
        con.close()


def test_content_answers_alike(tmp_path) -> None:
    db = tmp_path / "fc.duckdb"
    keys = seed_database(db)
    _with_pages(db)
    users = users_by_variant(load_experiment_file(DEMO_EXPERIMENT))
    armor, control = users["armor"], users["control"]
    cases = [
        ("client", EXP, {"user_id": armor, "item_id": "pumps-01"}),  # the approved page
        ("client", EXP, {"user_id": armor, "item_id": "valves-02"}),  # pending: control's copy, "unapproved"
        ("client", EXP, {"user_id": armor, "item_id": "motors-03"}),  # no page: "missing"
        ("client", EXP, {"user_id": armor, "item_id": "no-such-item"}),  # unknown item: content null
        ("client", EXP, {"user_id": control, "item_id": "pumps-01"}),  # control's copy
        ("admin", EXP, {"user_id": control, "item_id": "pumps-01", "force_variant": "armor"}),
        ("client", EXP, {"user_id": control, "item_id": "pumps-01", "force_variant": "armor"}),
        ("client", EXP, {"user_id": armor}), (None, EXP, {"user_id": armor, "item_id": "pumps-01"}),
        ("read", EXP, {"user_id": armor, "item_id": "pumps-01"}), ("client", "nope", {"user_id": armor, "item_id": "x"}),
        ("client", EXP, {"user_id": armor, "item_id": "z" * 201}),
    ]
    requests = [lambda c, w=who, k=key, p=params: c.get(f"/v1/experiments/{k}/content", params=p,
                                                         headers=_auth(keys, w))
                for who, key, params in cases]
    answers = _answers(db, requests, tmp_path)
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [200, 200, 200, 200, 200, 200, 403, 422, 401, 403, 404, 422]
    bodies = [a[1] for a in answers[True][:6]]
    assert [(b["source"], b["fallback"]) for b in bodies] == [
        ("armor", None), ("catalog", "unapproved"), ("catalog", "missing"), ("catalog", "missing"),
        ("catalog", None), ("armor", None)]
    assert bodies[3]["content"] is None and bodies[0]["content"]["segments"][1]["url"].startswith("/v1/images/")


def test_events_answer_alike(tmp_path) -> None:
    """POST /v1/events below FastAPI answers every case as the documented route does (each app over its
    own copy of the same fresh database, so duplicates count alike)."""
    db = tmp_path / "fpe.duckdb"
    keys = seed_database(db)
    users = users_by_variant(load_experiment_file(DEMO_EXPERIMENT))

    def ev(**kw) -> dict:  # the visitor the server assigns "armor": events naming it are trusted
        return {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": "armor", "user_id": users["armor"],
                "type": "dwell", "value": 10.0, **kw}

    good = [ev() for _ in range(3)]
    cases = [
        ("client", {"events": good}), ("client", {"events": good[:1] + [ev()]}),
        (None, {"events": [ev()]}), ("read", {"events": [ev()]}), ("bad", {"events": [ev()]}),
        ("client", "not json"), ("client", {"events": []}), ("client", {"events": [ev(value=-1.0)]}),
        ("client", {"events": [ev(experiment="nope")]}), ("client", {"events": [ev(variant="zzz")]}),
        ("client", {"events": [ev() for _ in range(1001)]}), ("client", {"events": [ev(event_id="x")]}),
        ("client", {"events": [ev(user_id="x" * 2_000_000)]}),  # over 1 MiB: 413
        # Event integrity: refused one by one (200, the rest committed), or the whole batch (422).
        ("client", {"events": [ev(), ev(variant="control"), ev(type="exposure", value=None, properties={"plan": "pro"})]}),
        ("client", {"events": [ev(user_id="a\x00b")]}), ("client", {"events": [ev(value="100")]}),
        ("client", {"events": [ev(ts="0001-01-01T00:00:00Z")]}), ("client", {"events": [ev(value=True)]}),
        ("client", {"events": [ev(ts="2020-01-01T00:00:00Z")]}),  # long before the experiment existed
    ]
    requests = [lambda c, w=who, b=body: c.post(
        "/v1/events", content=b if isinstance(b, str) else json.dumps(b),
        headers={"Content-Type": "application/json", **_auth(keys, w)}) for who, body in cases]
    answers = _answers(db, requests, tmp_path)
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [200, 200, 401, 403, 401, 400, 422, 422, 422, 422, 422, 422, 413,
                                             200, 422, 422, 422, 422, 200]
    assert [a[1] for a in answers[True][:2]] == [{"accepted": 3, "duplicates": 0}, {"accepted": 1, "duplicates": 1}]
    mixed = answers[True][13][1]
    assert (mixed["accepted"], mixed["duplicates"]) == (1, 0)
    assert [(r["index"], r["code"], r["field"]) for r in mixed["refused"]] == [
        (1, "variant_mismatch", "events[1].variant"), (2, "undeclared_segment", "events[2].properties.plan")]
    assert answers[True][18][1]["refused"][0]["code"] == "ts_out_of_range"


def test_page_routes_send_the_cors_headers_of_corsmiddleware(tmp_path) -> None:
    """The page routes bypass Starlette's CORSMiddleware; their CORS headers must be the same."""
    db = tmp_path / "cors.duckdb"
    keys = seed_database(db)
    auth = {"Authorization": f"Bearer {keys['client']}"}
    event = {"event_id": str(uuid.uuid4()), "experiment": EXP, "user_id": "c", "type": "page_view"}
    seen = {}
    for fast in (True, False):
        for origins in (("https://shop.example.com",), ("*",)):
            app = create_app(ServerSettings(db_path=db, fast_path=fast, cors_origins=origins))
            with TestClient(app) as client:
                out = []
                for origin in ("https://shop.example.com", "https://evil.example.net", None):
                    headers = {**auth, **({"Origin": origin} if origin else {})}
                    for r in (client.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": "u"}, headers=headers),
                              client.get(f"/v1/experiments/{EXP}/content", params={"user_id": "u", "item_id": "pumps-01"},
                                         headers=headers),
                              client.get(f"/v1/experiments/{EXP}/assignment", headers=headers),  # a 422
                              client.post("/v1/events", content=json.dumps({"events": [event]}), headers=headers)):
                        out.append((r.status_code, r.headers.get("access-control-allow-origin"), r.headers.get("vary")))
                seen[fast, origins] = out
    for origins in (("https://shop.example.com",), ("*",)):
        assert seen[True, origins] == seen[False, origins]
    allowed = seen[True, ("https://shop.example.com",)]
    assert allowed[0] == (200, "https://shop.example.com", "Origin")
    assert allowed[4][1] is None and allowed[8][1] is None  # another origin, and none: no grant
    assert seen[True, ("*",)][0][1] == "*"

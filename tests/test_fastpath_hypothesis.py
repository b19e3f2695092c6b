"""The fast path and the FastAPI routes it shadows answer alike for generated requests: paths with
percent-escapes (decoded once, as Starlette does), query strings, repeated and odd headers, origins.

Seeded and bounded (``derandomize=True``): the same examples every run. Each example goes to two apps,
fast path on and off, each over its own copy of one database, in the same order, so their state
(exposures, duplicates) stays the same."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from armor_ab.api.app import create_app
from armor_ab.services.state import ServerSettings
from armor_ab.store.content import images_dir_for, save_generated, set_review
from armor_ab.store.db import connect
from tests.helpers.platform import seed_database

EXP = "catalog-interleaved"
ORIGIN = "https://shop.example.com"
HEADERS = ("content-type", "www-authenticate", "retry-after", "vary", "access-control-allow-origin", "location",
           "connection")


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    """(keys, {fast: TestClient}) over two copies of one seeded database with an approved page."""
    from PIL import Image

    from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment

    tmp = tmp_path_factory.mktemp("hypothesis")
    db = tmp / "h.duckdb"
    keys = seed_database(db)
    con = connect(db)
    page = InterleavedContent([TextSegment("Pump: by hand."), ImageSegment.from_pil(Image.new("RGB", (64, 64), "teal"))],
                              ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt="Describe pumps-01"))
    save_generated(con, images_dir_for(db), EXP, "armor", "pumps-01", page, "Describe pumps-01")
    set_review(con, EXP, "approved", item_id="pumps-01")
    con.close()
    clients = {}
    for fast in (True, False):
        copy = tmp / f"h-{fast}.duckdb"
        shutil.copy(db, copy)
        clients[fast] = TestClient(create_app(ServerSettings(db_path=copy, fast_path=fast, cors_origins=(ORIGIN,))),
                                   follow_redirects=False)
        clients[fast].__enter__()
    yield keys, clients
    for client in clients.values():
        client.__exit__(None, None, None)


ESCAPES = ["%2D", "%252D", "%25", "%2F", "%2f", "%", "%zz", "%C3%BC", "%63", "%20", "+", ".", "..", "ü"]
keys_ = st.one_of(
    st.sampled_from([EXP, "nope", "catalog%2Dinterleaved", "catalog%252Dinterleaved", "%63atalog-interleaved",
                     "catalog-interleaved%2Fx", ""]),
    st.lists(st.one_of(st.sampled_from(["catalog", "-", "interleaved", *ESCAPES]),
                       st.text(alphabet="abcXY09-_.~", max_size=3)), max_size=5).map("".join),
)
tails = st.sampled_from(["assignment", "content", "assignment/", "content/", "%61ssignment", "content%2F",
                         "Assignment", "assignment%3F", "assignment;x"])
values = st.one_of(
    st.sampled_from(["pumps-01", "valves-02", "no-such-item", "armor", "control", "zzz", "", "x" * 201]),
    st.lists(st.one_of(st.sampled_from(["u", "1", *ESCAPES, "=", "&"]), st.text(alphabet="abz09-_~", max_size=4)),
             max_size=6).map("".join),
)
params = st.lists(st.tuples(st.sampled_from(["user_id", "item_id", "force_variant", "other", "user_id"]), values),
                  max_size=4)
auths = st.lists(st.sampled_from(["client", "admin", "read", "bad", "basic", "empty", "lower"]), max_size=2)
agents = st.sampled_from([None, "Mozilla/5.0", "Googlebot/2.1 (+http://www.google.com/bot.html)", ""])
origins = st.sampled_from([None, ORIGIN, "https://evil.example.net"])


def _authorization(keys: dict[str, str], who: str) -> str:
    odd = {"bad": "Bearer aab_000000000000_x", "basic": f"Basic {keys['client']}", "empty": "",
           "lower": f"bearer {keys['client']}"}
    return odd[who] if who in odd else f"Bearer {keys[who]}"


def _comparable(response) -> tuple:
    try:
        body = response.json()
    except ValueError:
        body = response.content
    if isinstance(body, dict):
        body.pop("server_time", None)
    return response.status_code, body, tuple(response.headers.get(h) for h in HEADERS)


def _headers(keys, auth, agent, origin) -> list[tuple[str, str]]:
    headers = [("Authorization", _authorization(keys, who)) for who in auth]
    if agent is not None:
        headers.append(("User-Agent", agent))
    if origin is not None:
        headers.append(("Origin", origin))
    return headers


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys_, tail=tails, query=params, auth=auths, agent=agents, origin=origins)
@example(key="catalog%252Dinterleaved", tail="assignment", query=[("user_id", "u")], auth=["client"], agent=None,
         origin=None)  # decoded once: "catalog%2Dinterleaved", no such experiment (404) on both doors
@example(key=EXP, tail="content", query=[("user_id", "u"), ("item_id", "pumps-01")], auth=["read", "client"],
         agent="a", origin=ORIGIN)  # two Authorization headers: the first counts on both doors (403)
@example(key=EXP, tail="assignment", query=[("user_id", "u")], auth=["client", "read"], agent=None, origin=None)
def test_experiment_routes_answer_alike(doors, key, tail, query, auth, agent, origin) -> None:
    keys, clients = doors
    url = f"/v1/experiments/{key}/{tail}"
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, value in query)
    headers = _headers(keys, auth, agent, origin)
    fast, slow = (_comparable(clients[f].get(url, headers=headers)) for f in (True, False))
    assert fast == slow, url


events = st.lists(st.fixed_dictionaries({
    "event_id": st.sampled_from(["6f1c2a4e-0000-4000-8000-000000000001", "6f1c2a4e-0000-4000-8000-000000000002", "x"]),
    "experiment": st.sampled_from([EXP, "nope"]),
    "variant": st.sampled_from(["armor", "control", "zzz"]),
    "user_id": st.sampled_from(["u1", "", "ü"]),
    "type": st.sampled_from(["dwell", "page_view", "exposure", "nope"]),
    "value": st.sampled_from([1.0, -1.0, 0.0]),
}), max_size=3)


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=events, raw=st.sampled_from([None, "", "not json", "{}", '{"events": 1}']), auth=auths, agent=agents,
       origin=origins)
def test_events_answer_alike(doors, batch, raw, auth, agent, origin) -> None:
    keys, clients = doors
    body = raw if raw is not None else json.dumps({"events": batch})
    headers = [*_headers(keys, auth, agent, origin), ("Content-Type", "application/json")]
    fast, slow = (_comparable(clients[f].post("/v1/events", content=body, headers=headers)) for f in (True, False))
    assert fast == slow, body

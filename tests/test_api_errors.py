"""Bad input everywhere gets a 4xx with the one JSON error shape; fuzzing finds no 5xx."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armor_ab.api.app import create_app
from armor_ab.services.state import ServerSettings
from tests.helpers.platform import Platform

EXP = "catalog-interleaved"


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None, field: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "field"} <= set(body["error"])
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    if field:
        assert body["error"]["field"] == field, body
    return body["error"]


def ev(**overrides) -> dict:
    base = {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": "armor", "user_id": "u",
            "type": "page_view"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


BAD_EVENTS = [
    (ev(value="abc", type="dwell"), "events[0].value"),  # wrong type
    (ev(user_id=123), "events[0].user_id"),
    (ev(type="click"), "events[0].type"),
    (ev(type="dwell", value=-5), "events[0]"),  # negative dwell
    (ev(type="dwell", value=24 * 3600 * 1000 + 1), "events[0]"),  # over 24 h
    (ev(type="dwell"), "events[0]"),  # dwell without a value
    (ev(event_id=...), "events[0].event_id"),  # missing
    (ev(event_id="not-a-uuid"), "events[0].event_id"),  # malformed
    (ev(ts="2020-01-01T00:00:00"), "events[0]"),  # naive timestamp
    (ev(surprise=1), "events[0].surprise"),  # unknown field
]


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS)
def test_bad_events_are_refused_with_the_field(platform: Platform, bad: dict, field: str) -> None:
    with platform.client() as c:
        err = assert_error_shape(c.post("/v1/events", json={"events": [bad]}), 422, "validation_error")
    assert err["field"] == field


def test_unknown_experiment_and_variant(platform: Platform) -> None:
    with platform.client() as c:
        assert_error_shape(c.post("/v1/events", json={"events": [ev(experiment="nope")]}), 422,
                           "unknown_reference", "events[0].experiment")
        assert_error_shape(c.post("/v1/events", json={"events": [ev(), ev(variant="blue")]}), 422,
                           "unknown_reference", "events[1].variant")
        assert_error_shape(c.get("/v1/experiments/nope/assignment", params={"user_id": "u"}), 404,
                           "experiment_not_found", "key")
        assert_error_shape(c.get(f"/v1/experiments/{EXP}/assignment"), 422, "validation_error", "user_id")


def test_batch_limits_and_bodies(platform: Platform) -> None:
    with platform.client() as c:
        assert_error_shape(c.post("/v1/events", json={"events": [ev() for _ in range(1001)]}), 422,
                           "validation_error", "events")
        assert_error_shape(c.post("/v1/events", json={"events": []}), 422, "validation_error", "events")
        assert_error_shape(c.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"}),
                           400, "invalid_json")
        big = json.dumps({"events": [ev(user_id="x" * 190, properties={f"k{i}": "v" * 60 for i in range(30)})
                                      for _ in range(1000)]})
        assert len(big) > 1024 * 1024
        assert_error_shape(c.post("/v1/events", content=big, headers={"Content-Type": "application/json"}),
                           413, "payload_too_large")

        def chunks():
            for _ in range(20):
                yield b" " * 65536 * 2

        assert_error_shape(c.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"}),
                           413, "payload_too_large")


def test_bad_yaml_and_bad_specs(platform: Platform) -> None:
    yaml_headers = {"Content-Type": "application/yaml"}
    with platform.client("admin") as c:
        err = assert_error_shape(c.post("/v1/experiments", content="key: [unclosed", headers=yaml_headers), 400,
                                 "invalid_yaml")
        assert "line" in err["message"]
        assert_error_shape(c.post("/v1/experiments", content="key: x\nname: y\n", headers=yaml_headers), 422,
                           "validation_error", "variants")
        bad_weights = {"key": "w", "name": "w", "metrics": {"primary": "inquiry_rate"},
                       "variants": [{"key": "a", "weight": 0.9}, {"key": "b", "weight": 0.9}]}
        err = assert_error_shape(c.post("/v1/experiments", json=bad_weights), 422, "validation_error")
        assert "sum to 1" in err["message"]
        bad_metric = {**bad_weights, "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
                      "metrics": {"primary": "revenue"}}
        assert_error_shape(c.post("/v1/experiments", json=bad_metric), 422, "validation_error", "metrics.primary")
        assert_error_shape(c.post("/v1/experiments", content="x", headers={"Content-Type": "text/csv"}), 415,
                           "unsupported_media_type")
        assert_error_shape(c.post("/v1/experiments/nope/start"), 404, "experiment_not_found")
        assert_error_shape(c.post("/v1/keys", json={"scope": "god"}), 422, "validation_error", "scope")
        assert_error_shape(c.get("/v1/nothing-here"), 404, "not_found")


@pytest.mark.parametrize("raw", [
    '{"events": [{"event_id": "%s", "experiment": "catalog-interleaved", "user_id": "u", "type": "dwell", "value": Infinity}]}',
    '{"events": [{"event_id": "%s", "experiment": "catalog-interleaved", "user_id": "u", "type": "page_view", "properties": {"x": NaN}}]}',
])
def test_non_finite_numbers_are_refused(platform: Platform, raw: str) -> None:
    body = raw % uuid.uuid4()
    with platform.client() as c:
        assert_error_shape(c.post("/v1/events", content=body, headers={"Content-Type": "application/json"}), 422,
                           "validation_error")


def test_unexpected_error_is_500_with_request_id(tmp_path) -> None:
    app = create_app(ServerSettings(db_path=tmp_path / "e.duckdb"))

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    err = assert_error_shape(r, 500, "internal_error")
    assert err["request_id"] == r.headers["x-request-id"]
    assert "secret internals" not in r.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.uuids().map(str) | st.text(max_size=40),
        "experiment": st.sampled_from([EXP, "nope", ""]) | st.text(max_size=10),
        "variant": st.sampled_from(["control", "armor", None, "x"]) | json_values,
        "user_id": st.text(max_size=300) | json_values,
        "item_id": st.text(max_size=20) | st.none(),
        "type": st.sampled_from(["exposure", "page_view", "dwell", "inquiry", "other"]),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.none() | st.text(max_size=5),
        "ts": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=25),
        "properties": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(json_values, st.fixed_dictionaries({"events": st.lists(event_like, max_size=5)})))
def test_fuzz_events_never_5xx(platform: Platform, body) -> None:
    r = httpx.post(f"{platform.url}/v1/events", json=body, headers=platform.headers())
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_error_shape(r, r.status_code)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", "..")),
       params=st.dictionaries(st.sampled_from(["user_id", "item_id", "force_variant", "junk"]),
                              st.text(max_size=250), max_size=4))
def test_fuzz_assignment_never_5xx(platform: Platform, key: str, params: dict) -> None:
    path = f"/v1/experiments/{quote(key, safe='')}/assignment"
    r = httpx.get(platform.url + path, params=params, headers=platform.headers())
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_error_shape(r, r.status_code)


def test_full_writer_queue_answers_503_with_retry_after(tmp_path) -> None:
    """Back-pressure is an answer, never a silent drop: the batch was not stored and can be retried."""
    import time

    from tests.helpers.platform import seed_database, wait_for_file

    db = tmp_path / "q.duckdb"
    keys = seed_database(db)
    app = create_app(ServerSettings(db_path=db, writer_queue=1))
    gate = tmp_path / "gate"
    with TestClient(app) as client:
        store = app.state.armor.store
        blocker = store.write(wait_for_file, str(gate))  # the writer is busy
        deadline = time.monotonic() + 20
        while not (tmp_path / "gate.running").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        filler = store.write(wait_for_file, str(gate), 0.0)  # and its queue is full
        headers = {"Authorization": f"Bearer {keys['client']}"}
        batch = {"events": [ev()]}
        r = client.post("/v1/events", json=batch, headers=headers)
        err = assert_error_shape(r, 503, "queue_full")
        assert r.headers["retry-after"] == "1" and "retry" in err["message"]
        metrics = client.get("/metrics").text
        assert "armor_ab_writer_queue_full_total 1.0" in metrics
        gate.touch()
        assert blocker.result(10)[0] is True
        filler.result(10)  # the queue is empty again
        retry = client.post("/v1/events", json=batch, headers=headers)
        assert retry.status_code == 200 and retry.json() == {"accepted": 1, "duplicates": 0}


def test_logs_never_carry_key_secrets(capsys) -> None:
    import logging

    from armor_ab.logs import JsonFormatter, mask_secrets

    secret = "aab_0123456789ab_SuperSecretPart-xyz"
    assert mask_secrets(f"Bearer {secret}") == "Bearer aab_0123456789ab_***"
    record = logging.LogRecord("armor_ab.api", logging.INFO, __file__, 1, "auth with %s", (secret,), None)
    record.header = f"Authorization: Bearer {secret}"
    line = JsonFormatter().format(record)
    assert "SuperSecretPart" not in line and "aab_0123456789ab_***" in line
    assert json.loads(line)["logger"] == "armor_ab.api"

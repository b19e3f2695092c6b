"""API keys: created and shown at once, revoked without breaking the connection (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from armor_ab.api.app import create_app
from armor_ab.services.state import ServerSettings
from armor_ab.store.process import query
from tests.helpers.platform import Server, seed_database


def test_a_key_is_stored_only_with_the_answer_that_shows_it(tmp_path: Path) -> None:
    """When the snapshot after the write cannot be read, the key is rolled back with it: never a key whose
    secret nobody saw (the issue: 500, and a key in the table)."""
    db = tmp_path / "k.duckdb"
    keys = seed_database(db)
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    app = create_app(ServerSettings(db_path=db))
    with TestClient(app, raise_server_exceptions=False) as client:
        store = app.state.armor.store
        count = "SELECT count(*) FROM api_keys"
        before = store.read(query, count).result(30)
        # An approved page the snapshot cannot serve (no segments): every snapshot after it fails.
        poison = store.write(
            query,
            "INSERT INTO content (experiment, variant, item_id, status, content, digest, prompt, model, generated_at, reviewed_at) VALUES ('catalog-interleaved', 'armor', 'P-01', 'approved', '{}', 'd', 'p', 'm', ?, ?)",
            [datetime.now(UTC), datetime.now(UTC)],
        )
        with pytest.raises(KeyError):
            poison.result(30)
        r = client.post("/v1/keys", json={"scope": "read", "name": "lost?"}, headers=admin)
        assert r.status_code == 500
        assert store.read(query, count).result(30) == before
        store.write(query, "DELETE FROM content").result(30)  # the snapshot reads again
        made = client.post("/v1/keys", json={"scope": "read"}, headers=admin)
        assert made.status_code == 201 and made.json()["key"].startswith("aab_")
        assert store.read(query, count).result(30) == [(before[0][0] + 1,)]


def _client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_revoking_a_key_answers_an_empty_204_on_a_connection_that_stays_open(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    keys = seed_database(db)
    server = Server(db).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['admin']}"},
                          timeout=30) as c:
            made = c.post("/v1/keys", json={"scope": "read", "name": "to-revoke"}).json()
            deleted = c.delete(f"/v1/keys/{made['key_id']}")
            assert deleted.status_code == 204 and deleted.content == b""
            port = _client_port(deleted)
            after = c.get("/v1/keys")  # the same keep-alive connection (before the fix: reset by the server)
            assert after.status_code == 200 and _client_port(after) == port
            assert next(k for k in after.json() if k["key_id"] == made["key_id"])["revoked_at"]
            assert c.get("/v1/experiments", headers={"Authorization": f"Bearer {made['key']}"}).status_code == 401
            assert c.delete(f"/v1/keys/{made['key_id']}").status_code == 404  # not counted twice
            metrics = c.get("/metrics").text
        assert "armor_ab_keys_revoked_total 1.0" in metrics
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()

"""The API's contract: every route documents a named response schema, and the whole OpenAPI schema
matches the committed snapshot, so a contract change is a deliberate, reviewed diff.

After a deliberate change, regenerate the snapshot and commit it with the change:

    .venv/bin/python -m tests.test_openapi
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from armor_ab.services.state import ServerSettings
from armor_ab.web.server import create_server

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "openapi.json"
JSON = "application/json"


def current_schema(db: Path) -> dict:
    """``/openapi.json`` of the whole server (API, snippet and site) over an empty database."""
    with TestClient(create_server(ServerSettings(db_path=db))) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        return response.json()


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    return current_schema(tmp_path_factory.mktemp("openapi") / "o.duckdb")


def _named(node: dict) -> bool:
    """A ``$ref`` to a component, or an array of them."""
    return "$ref" in node or (node.get("type") == "array" and "$ref" in node.get("items", {}))


def test_every_route_has_a_named_success_schema(schema: dict) -> None:
    """JSON answers name their schema (``components/schemas``); the others declare their media type."""
    unnamed = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            success = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            assert success, f"{method.upper()} {path} documents no success response"
            for code, response in success.items():
                content = response.get("content")
                if code == "204":
                    assert not content, f"{method.upper()} {path}: 204 with a body"
                    continue
                assert content, f"{method.upper()} {path}: {code} documents no content"
                if JSON in content:
                    if not _named(content[JSON].get("schema", {})):
                        unnamed.append(f"{method.upper()} {path} {code}")
                else:
                    assert all(m.split("/")[0] in ("image", "text", "application") for m in content), content
    assert unnamed == []


def test_every_error_answer_is_documented_in_the_one_error_shape(schema: dict) -> None:
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            if path in ("/healthz", "/metrics", "/v1/sdk/armor-ab.js") or path.startswith("/v1/images/"):
                continue  # public or operational: no key, no error body beyond the transport's
            for code in ("401", "422"):
                assert code in op["responses"], f"{method.upper()} {path} does not document {code}"
                ref = op["responses"][code]["content"][JSON]["schema"]
                assert ref.get("$ref", "").endswith(("/ErrorPublic", "/HTTPValidationError")), (path, code, ref)


def test_the_schema_matches_the_committed_snapshot(schema: dict) -> None:
    assert SNAPSHOT.exists(), "no snapshot: run `.venv/bin/python -m tests.test_openapi` and commit it"
    committed = json.loads(SNAPSHOT.read_text())
    if committed != schema:
        changed = sorted({*committed["paths"], *schema["paths"]} - {
            p for p in schema["paths"] if committed["paths"].get(p) == schema["paths"][p]})
        models = sorted(k for k in {*committed["components"]["schemas"], *schema["components"]["schemas"]}
                        if committed["components"]["schemas"].get(k) != schema["components"]["schemas"].get(k))
        pytest.fail(f"the API contract changed: paths {changed}, schemas {models}. If deliberate, regenerate "
                    "the snapshot (`.venv/bin/python -m tests.test_openapi`) and commit it with the change.")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = current_schema(Path(tmp) / "o.duckdb")
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} ({len(fresh['paths'])} paths, {len(fresh['components']['schemas'])} schemas)", file=sys.stderr)

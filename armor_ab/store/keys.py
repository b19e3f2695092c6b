"""API keys: ``aab_<key_id>_<secret>``, stored as a SHA-256 hash; the secret is shown once.

Scopes: ``client`` (publishable, for web pages: assignment, content and events), ``read``
(results and dashboards) and ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

SCOPES = ("client", "read", "admin")
# What each scope may do: admin implies read and client; read does not imply client (a
# dashboard key cannot write events) and client does not imply read (a page cannot see results).
GRANTS = {"client": {"client"}, "read": {"read"}, "admin": {"client", "read", "admin"}}


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scope: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    def public(self) -> dict:
        return {
            "key_id": self.key_id,
            "scope": self.scope,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def parse_key_id(secret_key: str) -> str | None:
    """The public id inside a key, or None when the string is not shaped like one of ours."""
    parts = secret_key.split("_")
    if len(parts) != 3 or parts[0] != "aab" or len(parts[1]) != 12:
        return None
    return parts[1]


def create_key(con: duckdb.DuckDBPyConnection, scope: str, name: str | None = None) -> tuple[str, ApiKey]:
    """Store a new key and return (the full secret, its record). The secret is not kept."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    key_id = secrets.token_hex(6)
    secret_key = f"aab_{key_id}_{secrets.token_urlsafe(24).replace('_', 'x')}"
    now = datetime.now(UTC)
    con.execute(
        "INSERT INTO api_keys (key_id, key_hash, scope, name, created_at) VALUES (?, ?, ?, ?, ?)",
        [key_id, hash_key(secret_key), scope, name, now],
    )
    return secret_key, ApiKey(key_id, scope, name, now, None)


def create_key_checked(con: duckdb.DuckDBPyConnection, scope: str, name: str | None = None) -> tuple[str, ApiKey]:
    """``create_key`` for a server: committed only once the server's snapshot reads with the key in it.

    The server answers an admin write with the snapshot read after it; a key committed before a
    snapshot that then fails would exist while its secret is never shown. Here the snapshot is read
    inside the key's transaction, so a failure rolls the key back with it.
    """
    from armor_ab.store.process import read_snapshot

    con.execute("BEGIN")
    try:
        created = create_key(con, scope, name)
        read_snapshot(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return created


def list_keys(con: duckdb.DuckDBPyConnection) -> list[ApiKey]:
    rows = con.execute(
        "SELECT key_id, scope, name, created_at, revoked_at FROM api_keys ORDER BY created_at"
    ).fetchall()
    return [ApiKey(*r) for r in rows]


def revoke_key(con: duckdb.DuckDBPyConnection, key_id: str) -> bool:
    n = con.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL RETURNING key_id",
        [datetime.now(UTC), key_id],
    ).fetchall()
    return bool(n)


def active_key_hashes(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    """key_hash -> (key_id, scope) for every key not revoked: the API's in-memory lookup."""
    rows = con.execute("SELECT key_hash, key_id, scope FROM api_keys WHERE revoked_at IS NULL").fetchall()
    return {h: (kid, scope) for h, kid, scope in rows}

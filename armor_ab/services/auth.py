"""API keys at every door: the one bearer-token parser and the one scope check.

The FastAPI dependencies (``api/deps.py``), the ASGI fast path and the beacon all end here, so a
key is refused with the same status, code and message whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from armor_ab.services.errors import ServiceError
from armor_ab.store.keys import GRANTS, hash_key

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    key_id: str
    scope: str

    def may(self, scope: str) -> bool:
        return scope in GRANTS[self.scope]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, rest = authorization.partition(" ")
    token = rest.strip()
    return token if scheme.lower() == "bearer" and token else None


def missing_key(where: str = "send `Authorization: Bearer <key>`") -> ServiceError:
    return ServiceError(401, "unauthorized", f"missing API key: {where}", headers=BEARER_CHALLENGE)


def key_principal(keys: Mapping[str, tuple[str, str]], token: str | None, scope: str) -> Principal:
    """The principal of a bearer token among the active ``keys`` (hash -> (key id, scope)):
    401 when missing or unknown, 403 when its scope does not grant ``scope``."""
    if not token:
        raise missing_key()
    found = keys.get(hash_key(token))
    if found is None:
        raise ServiceError(401, "unauthorized", "unknown or revoked API key", headers=BEARER_CHALLENGE)
    principal = Principal(*found)
    if not principal.may(scope):
        raise ServiceError(403, "forbidden", f"this endpoint needs a key with scope '{scope}'; yours is '{principal.scope}'")
    return principal


def publishable_principal(keys: Mapping[str, tuple[str, str]], token: str | None) -> Principal:
    """A client-scope key sent in a URL (the beacon): any other scope is refused, so no secret key
    is ever accepted from a URL."""
    if not token:
        raise ServiceError(401, "unauthorized", "missing API key: send ?key=<client key>", field="key")
    principal = key_principal(keys, token, "client")
    if principal.scope != "client":
        raise ServiceError(403, "forbidden", "the beacon takes only a client-scope (publishable) key; "
                           "never put a read or admin key in a URL", field="key")
    return principal

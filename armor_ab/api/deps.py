"""Route dependencies as ``Annotated`` aliases: the app state and scoped API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from armor_ab.api.errors import ApiError
from armor_ab.api.state import AppState
from armor_ab.store.keys import GRANTS, hash_key

_bearer = HTTPBearer(auto_error=False, description="an armor-ab API key: `Authorization: Bearer aab_…`")


async def get_state(request: Request) -> AppState:
    return request.app.state.armor


State = Annotated[AppState, Depends(get_state)]


@dataclass(frozen=True)
class Principal:
    key_id: str
    scope: str

    def may(self, scope: str) -> bool:
        return scope in GRANTS[self.scope]


def authorize(request: Request, scope: str) -> Principal:
    """The key's principal, or 401/403 in the one error shape (for hand-parsed hot routes)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                       headers={"WWW-Authenticate": "Bearer"})
    return _principal(request, token.strip(), scope)


def _principal(request: Request, token: str, scope: str) -> Principal:
    return key_principal(request.app.state.armor, token, scope)


def key_principal(state: AppState, token: str, scope: str) -> Principal:
    """The principal of a bearer token, or 401 (unknown) / 403 (wrong scope)."""
    found = state.keys.get(hash_key(token))
    if found is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    principal = Principal(*found)
    if not principal.may(scope):
        raise ApiError(403, "forbidden", f"this endpoint needs a key with scope '{scope}'; yours is '{principal.scope}'")
    return principal


def _require(scope: str):
    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
        return _principal(request, credentials.credentials, scope)

    return dependency


ClientKey = Annotated[Principal, Depends(_require("client"))]
ReadKey = Annotated[Principal, Depends(_require("read"))]
AdminKey = Annotated[Principal, Depends(_require("admin"))]

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


def _require(scope: str):
    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
        found = request.app.state.armor.keys.get(hash_key(credentials.credentials))
        if found is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        principal = Principal(*found)
        if not principal.may(scope):
            raise ApiError(403, "forbidden", f"this endpoint needs a key with scope '{scope}'; yours is '{principal.scope}'")
        return principal

    return dependency


ClientKey = Annotated[Principal, Depends(_require("client"))]
ReadKey = Annotated[Principal, Depends(_require("read"))]
AdminKey = Annotated[Principal, Depends(_require("admin"))]

"""Route dependencies as ``Annotated`` aliases: the server's live state and scoped API keys.

Keys are parsed and checked in ``armor_ab.services.auth`` (the one parser every door uses).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from armor_ab.services.auth import Principal, bearer_token, key_principal
from armor_ab.services.state import AppState

# Declares the scheme in OpenAPI (/docs shows the lock); the header itself is read by ``bearer_token``.
_bearer = HTTPBearer(auto_error=False, description="an armor-ab API key: `Authorization: Bearer aab_…`")


async def get_state(request: Request) -> AppState:
    return request.app.state.armor


State = Annotated[AppState, Depends(get_state)]


def authorize(request: Request, scope: str) -> Principal:
    """The request's key as a principal of ``scope``, or 401/403 (for routes that read the request themselves)."""
    return key_principal(request.app.state.armor.keys, bearer_token(request.headers.get("authorization")), scope)


def _require(scope: str):
    async def dependency(request: Request, _scheme: Annotated[object, Depends(_bearer)]) -> Principal:
        return authorize(request, scope)

    return dependency


ClientKey = Annotated[Principal, Depends(_require("client"))]
ReadKey = Annotated[Principal, Depends(_require("read"))]
AdminKey = Annotated[Principal, Depends(_require("admin"))]

"""A small client of the armor-ab HTTP API; no Streamlit here, so it is unit-testable.

The dashboards read and write only through this client: the API process is the one owner of
the DuckDB file. Errors come back as two exceptions the pages turn into plain messages:
``ApiUnavailable`` (nothing answers at the URL) and ``ApiError`` (the API's error shape).

Reads come back as the API's own models (``armor_ab.api.schemas``), so pages read attributes, not keys;
the models pickle, so ``st.cache_data`` keeps them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from armor_ab.api.schemas import (
    CatalogItemPublic,
    CatalogItemsPublic,
    ContentReviewed,
    ExperimentHealthPublic,
    ExperimentPublic,
    PauseStatePublic,
    StoredContentPublic,
)
from armor_ab.reporting.models import ExperimentReport, PowerPlanPublic

M = TypeVar("M", bound=BaseModel)

DEFAULT_API = "http://127.0.0.1:8000"
CACHE_TTL_S = 5.0  # the dashboards cache reads this long (st.cache_data ttl); writes clear the cache
PREVIEW_USER = "dashboard-preview"  # the user id of content previews (forced variants log no exposure)


class ApiUnavailable(Exception):
    """Nothing (healthy) answers at the API's URL: refused, timed out, or not the armor-ab API."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"the armor-ab API at {url} is not reachable ({reason})")


class ApiError(Exception):
    """An error answer of the API: ``{"error": {"code", "message", "field"}}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status, self.code, self.message, self.field = status, code, message, field
        where = f" (field {field})" if field else ""
        super().__init__(f"{message}{where} [{status} {code}]")


def _typed(model: type[M], data: Any) -> M:
    """The API's answer as its model; an answer that does not fit is an ApiError, not a traceback."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ApiError(200, "unexpected_answer", f"the API's answer is not a {model.__name__} ({where}: "
                                                 f"{first['msg']}); are the API and the dashboard the same version?",
                       where or None) from None


def _error_from(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
        return ApiError(response.status_code, str(err.get("code")), str(err.get("message")), err.get("field"))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, "http_error", text)


@dataclass(frozen=True)
class ApiClient:
    """The API at ``base_url`` with one key (``read`` or ``admin`` scope; None for public routes)."""

    base_url: str = DEFAULT_API
    key: str | None = None
    timeout: float = 60.0

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
                content: bytes | str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """One request; raises ApiUnavailable on transport errors and ApiError on error answers."""
        if params:
            params = {k: _param(v) for k, v in params.items() if v is not None}
        try:
            response = httpx.request(method, self.url + path, params=params, json=json_body, content=content,
                                     headers=self._headers(headers), timeout=self.timeout)
        except httpx.TimeoutException:
            raise ApiUnavailable(self.url, f"no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ApiUnavailable(self.url, type(exc).__name__ + (f": {exc}" if str(exc) else "")) from None
        if response.status_code >= 400:
            if response.status_code in (502, 503, 504) and "error" not in response.text:
                raise ApiUnavailable(self.url, f"HTTP {response.status_code}")
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # ---- reads -------------------------------------------------------------------------------------

    def server_health(self) -> dict:
        """The server's own health (``GET /healthz``: the database process, the writer queue)."""
        return self._json("GET", "/healthz")

    def health(self, key: str) -> ExperimentHealthPublic:
        """An experiment's live health: ok, warn or critical, its problems, whether it is paused and why
        (``GET /v1/experiments/{key}/health``)."""
        return _typed(ExperimentHealthPublic, self._json("GET", f"/v1/experiments/{key}/health"))

    def scope(self) -> str:
        """``admin`` or ``read``: what this key may do here (a client key is refused with ApiError 403)."""
        self._json("GET", "/v1/experiments")  # 401 unknown key, 403 client key
        try:
            self._json("GET", "/v1/keys")
        except ApiError as exc:
            if exc.status == 403:
                return "read"
            raise
        return "admin"

    def experiments(self) -> list[ExperimentPublic]:
        return [_typed(ExperimentPublic, e) for e in self._json("GET", "/v1/experiments")]

    def experiment(self, key: str) -> ExperimentPublic:
        return _typed(ExperimentPublic, self._json("GET", f"/v1/experiments/{key}"))

    def results(self, key: str, cuped: bool | None = None) -> ExperimentReport:
        """The report, verdict included (the API decides: ``report.verdict``)."""
        return _typed(ExperimentReport,
            self._json("GET", f"/v1/experiments/{key}/results", params={"cuped": cuped}))

    def roi(self, assumptions: dict, effect: dict, *, draws: int = 20_000, seed: int = 0,
            experiment: str | None = None) -> dict:
        """The ROI of edited assumptions (``POST /v1/roi``); with ``experiment``, its ``verdict`` is the one the
        report would give with this ROI (decided by the API, by the report's rules)."""
        body = {"assumptions": assumptions, "effect": effect, "draws": draws, "seed": seed, "experiment": experiment}
        return self._json("POST", "/v1/roi", json_body=body)

    def power(self, *, baseline_mean: float, baseline_sd: float, mde: float, alpha: float = 0.05,
              power: float = 0.8, variants: int = 2, visitors_per_day: float | None = None,
              mode: str = "sequential") -> PowerPlanPublic:
        """The API's sample-size plan (``POST /v1/power``, body ``PowerQuery``); nothing is computed here."""
        body = {"baseline_mean": baseline_mean, "baseline_sd": baseline_sd, "mde": mde, "alpha": alpha,
                "power": power, "variants": variants, "visitors_per_day": visitors_per_day, "mode": mode}
        return _typed(PowerPlanPublic, self._json("POST", "/v1/power", json_body=body))

    def content_review(self, key: str, *, status: str | None = None, item_id: str | None = None,
                       verdict: str | None = None) -> list[dict]:
        """The stored pages with their review state, guardrail verdict, failing checks and check results
        (``StoredContentPublic`` JSON, validated; ``verdict``: pass, warn or fail only)."""
        rows = self._json("GET", f"/v1/experiments/{key}/content/review",
                          params={"status": status, "item_id": item_id, "verdict": verdict})
        for row in rows:
            _typed(StoredContentPublic, row)  # the shape is checked; pages keep the JSON (checks are free-form)
        return rows

    def content(self, key: str, item_id: str, variant: str, user_id: str = PREVIEW_USER) -> dict:
        """What a visitor of ``variant`` sees for ``item_id`` (admin key: a forced, unlogged preview)."""
        return self._json("GET", f"/v1/experiments/{key}/content",
                          params={"user_id": user_id, "item_id": item_id, "force_variant": variant})

    def catalog_items(self, *, category: str | None = None, limit: int = 100, offset: int = 0) -> CatalogItemsPublic:
        """One page of the imported catalog, in catalog order."""
        return _typed(CatalogItemsPublic, self._json("GET", "/v1/catalog/items",
                                                     params={"category": category, "limit": limit, "offset": offset}))

    def catalog_item(self, item_id: str) -> CatalogItemPublic:
        """One catalog item (name, category, control copy, specs, photo URL); ApiError 404 when unknown."""
        return _typed(CatalogItemPublic, self._json("GET", f"/v1/catalog/items/{quote(item_id, safe='')}"))

    def image(self, path: str) -> bytes:
        """An image's bytes by its API path (``/v1/images/<sha256>``): a generated PNG or a catalog photo
        (PNG, JPEG, WebP); public, immutable."""
        return self.request("GET", path, headers={"Accept": "image/*"}).content

    # ---- writes (admin) ----------------------------------------------------------------------------

    def review(self, key: str, status: str, *, item_id: str | None = None, variant: str | None = None,
               all_items: bool = False, verdict: str | None = None) -> ContentReviewed:
        """Approve, reject or reset pages: one item (one variant), or all of them; ``verdict`` keeps only pages
        the guardrails gave it (``review(key, "approved", all_items=True, verdict="pass")``: approve what
        passes). Approving one page that fails a blocking check is ApiError 409 ``guardrail_failed``."""
        body = {"status": status, "item_id": item_id, "variant": variant, "all": all_items, "verdict": verdict}
        return _typed(ContentReviewed, self._json("POST", f"/v1/experiments/{key}/content/review", json_body=body))

    def pause(self, key: str, cause: str) -> PauseStatePublic:
        """Pause a running experiment's ARMOR arms (they serve control's copy, fallback ``paused``); ``changed``
        is false when it already was paused (the first cause stays). ApiError 409 when it is not running."""
        return _typed(PauseStatePublic, self._json("POST", f"/v1/experiments/{key}/pause", json_body={"cause": cause}))

    def resume(self, key: str, note: str | None = None) -> PauseStatePublic:
        """Resume a paused experiment's ARMOR arms; ``changed`` is false when it was not paused."""
        return _typed(PauseStatePublic, self._json("POST", f"/v1/experiments/{key}/resume", json_body={"note": note}))

    def save_yaml(self, yaml_text: str, *, key: str | None = None,
                  new_bucket_version: bool = False) -> ExperimentPublic:
        """Create (``key`` None: POST) or replace (PUT) an experiment from its YAML, as the file is."""
        path = "/v1/experiments" if key is None else f"/v1/experiments/{key}"
        return _typed(ExperimentPublic, self._json(
            "POST" if key is None else "PUT", path, content=yaml_text.encode("utf-8"),
            params={"new_bucket_version": new_bucket_version or None}, headers={"Content-Type": "application/yaml"}))

    def save_spec(self, spec: dict, *, new_bucket_version: bool = False) -> ExperimentPublic:
        """Replace an experiment's spec from JSON (PUT; the key comes from the spec)."""
        return _typed(ExperimentPublic, self._json(
            "PUT", f"/v1/experiments/{spec['key']}", content=json.dumps(spec).encode(),
            params={"new_bucket_version": new_bucket_version or None}, headers={"Content-Type": "application/json"}))

    def start(self, key: str) -> ExperimentPublic:
        return _typed(ExperimentPublic, self._json("POST", f"/v1/experiments/{key}/start"))

    def stop(self, key: str) -> ExperimentPublic:
        return _typed(ExperimentPublic, self._json("POST", f"/v1/experiments/{key}/stop"))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

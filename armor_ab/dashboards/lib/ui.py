"""Streamlit glue shared by every page: settings, sign-in, the experiment picker, cached API calls.

* The API's URL comes from ``ARMOR_AB_API``; keys are ``read`` or ``admin`` scope.
* Sign-in: a key typed in the sidebar, checked against the API and kept in session state. When the
  dashboard runs with ``--no-auth`` (``ARMOR_AB_DASHBOARD_NO_AUTH=1``) the key comes from ``ARMOR_AB_KEY``.
* Every read goes through ``st.cache_data`` with a short TTL, keyed by URL and key; writes clear it.
* An API that is down or refuses is one ``st.error`` with what to do, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import streamlit as st

from armor_ab.api.schemas import CatalogItemPublic, ExperimentHealthPublic, ExperimentPublic
from armor_ab.config import API_ENV, DASHBOARD_NO_AUTH_ENV, KEY_ENV, env_settings
from armor_ab.dashboards.lib import health as health_lib
from armor_ab.dashboards.lib.api import CACHE_TTL_S, ApiClient, ApiError, ApiUnavailable
from armor_ab.dashboards.lib.fmt import decision as decision_label
from armor_ab.dashboards.lib.fmt import md_escape
from armor_ab.reporting.models import ExperimentReport, PowerPlanPublic

ENV_API = API_ENV
ENV_KEY = KEY_ENV
ENV_NO_AUTH = DASHBOARD_NO_AUTH_ENV
TTL_S = CACHE_TTL_S  # reads are cached this long: a page re-run does not re-ask the API, a refresh soon sees new data

SESSION_KEY = "armor_api_key"
SESSION_SCOPE = "armor_scope"
SESSION_EXPERIMENT = "armor_experiment"
PICKER = "sidebar_experiment"


@dataclass(frozen=True)
class DashboardSettings:
    """What the dashboard process is started with (from ``armor_ab.config.env_settings``)."""

    api: str
    no_auth: bool
    env_key: str | None


def settings() -> DashboardSettings:
    env = env_settings()
    return DashboardSettings(env.api, env.dashboard_no_auth, env.key.get_secret_value() if env.key is not None else None)


# ---- cached reads (arguments are the cache key) -----------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def key_scope(api: str, key: str) -> str:
    return ApiClient(api, key).scope()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def experiments(api: str, key: str) -> list[ExperimentPublic]:
    return ApiClient(api, key).experiments()


@st.cache_data(ttl=TTL_S, show_spinner="Computing the statistics…")
def results(api: str, key: str, experiment: str, cuped: bool | None = None) -> ExperimentReport:
    return ApiClient(api, key).results(experiment, cuped=cuped)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def content_review(api: str, key: str, experiment: str) -> list[dict]:
    return ApiClient(api, key).content_review(experiment)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def health(api: str, key: str, experiment: str) -> ExperimentHealthPublic:
    return ApiClient(api, key).health(experiment)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def served_content(api: str, key: str, experiment: str, item_id: str, variant: str) -> dict:
    return ApiClient(api, key).content(experiment, item_id, variant)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def catalog_item(api: str, key: str, item_id: str) -> CatalogItemPublic | None:
    """The catalog item, or None when the catalog has no such id (a page generated before the item left it)."""
    try:
        return ApiClient(api, key).catalog_item(item_id)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


@st.cache_data(ttl=3600, show_spinner=False, max_entries=512)
def image(api: str, path: str) -> bytes:
    """Images are immutable (named by their SHA-256): cached for an hour."""
    return ApiClient(api).image(path)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def power(api: str, key: str, params: tuple[tuple[str, Any], ...]) -> PowerPlanPublic:
    return ApiClient(api, key).power(**dict(params))


@st.cache_data(ttl=TTL_S, show_spinner="Simulating the ROI…")
def roi(api: str, key: str, assumptions_json: str, effect_json: str, experiment: str | None = None) -> dict:
    return ApiClient(api, key).roi(json.loads(assumptions_json), json.loads(effect_json), experiment=experiment)


def clear_cache() -> None:
    """After a write: every cached read may be stale."""
    st.cache_data.clear()


# ---- errors ------------------------------------------------------------------------------------------


def error_text(exc: ApiUnavailable | ApiError) -> str:
    if isinstance(exc, ApiUnavailable):
        return (f"The armor-ab API at {exc.url} is not reachable ({exc.reason}). Start it with `armor-ab serve`, "
                f"or point the dashboard at it: `armor-ab dashboard --api URL` (or `{ENV_API}`).")
    if exc.status == 401:
        return f"The API did not accept the key: {exc.message}. Sign in again with a valid read or admin key."
    if exc.status == 403:
        return f"Not allowed with this key: {exc.message}."
    where = f" (field `{exc.field}`)" if exc.field else ""
    return f"The API refused: {exc.message}{where} [{exc.status} {exc.code}]."


def review_error_text(exc: ApiUnavailable | ApiError) -> str:
    """A review the API refused, in words: approving a page that fails a blocking check (409
    ``guardrail_failed``) says which checks and what to do; anything else as ``error_text``."""
    if isinstance(exc, ApiError) and exc.code == "guardrail_failed":
        return f"Not approved: {md_escape(exc.message)}."
    return error_text(exc)


def stop_with(exc: ApiUnavailable | ApiError) -> NoReturn:
    st.error(error_text(exc))
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises; this keeps type checkers honest


@contextmanager
def guard() -> Iterator[None]:
    """Run a page body; an API error becomes one message (and the page stops), not a traceback."""
    try:
        yield
    except (ApiUnavailable, ApiError) as exc:
        stop_with(exc)


# ---- the page frame: sign-in and the experiment picker -----------------------------------------------


@dataclass(frozen=True)
class Context:
    client: ApiClient
    scope: str
    experiments: list[ExperimentPublic] = field(default_factory=list)
    experiment: ExperimentPublic | None = None

    @property
    def api(self) -> str:
        return self.client.url

    @property
    def key(self) -> str:
        return self.client.key or ""

    @property
    def admin(self) -> bool:
        return self.scope == "admin"

    @property
    def experiment_key(self) -> str | None:
        return self.experiment.key if self.experiment else None

    @property
    def spec(self) -> dict:
        """The chosen experiment's spec (its JSON), or an empty dict."""
        return dict(self.experiment.spec) if self.experiment else {}


def _sign_out() -> None:
    for k in (SESSION_KEY, SESSION_SCOPE):
        st.session_state.pop(k, None)
    clear_cache()


def _sign_in(s: DashboardSettings) -> tuple[str, str]:
    """(key, scope), or the sign-in form and a stop."""
    if s.no_auth:
        if not s.env_key:
            st.error(f"Started with --no-auth but `{ENV_KEY}` is empty: set it to a read or admin key.")
            st.stop()
        with guard():
            scope = key_scope(s.api, s.env_key)
        st.sidebar.caption(f"API {s.api} · {scope} key from the environment (no sign-in)")
        return s.env_key, scope
    key = st.session_state.get(SESSION_KEY)
    if key:
        scope = st.session_state.get(SESSION_SCOPE, "read")
        st.sidebar.caption(f"API {s.api} · signed in with a {scope} key")
        st.sidebar.button("Sign out", key="signout_button", on_click=_sign_out)
        return key, scope
    with st.sidebar.form("signin_form"):
        st.text_input("API key (read or admin scope)", type="password", key="signin_key")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        typed = (st.session_state.get("signin_key") or "").strip()
        try:
            scope = ApiClient(s.api, typed).scope() if typed else None
        except ApiUnavailable as exc:
            stop_with(exc)
        except ApiError as exc:
            scope = None
            reason = ("a client key cannot read experiments: use a read or admin key" if exc.status == 403
                      else exc.message)
            st.sidebar.error(f"Sign-in refused: {reason}.")
        if scope:
            st.session_state[SESSION_KEY], st.session_state[SESSION_SCOPE] = typed, scope
            st.rerun()
    st.info("Sign in with a read or admin API key in the sidebar "
            "(`armor-ab keys create --scope read` prints one).")
    st.stop()
    raise AssertionError("unreachable")


def _picked() -> None:
    chosen = st.session_state.get(PICKER)
    st.session_state[SESSION_EXPERIMENT] = chosen
    st.query_params["experiment"] = chosen


def _pick_experiment(exps: list[ExperimentPublic]) -> ExperimentPublic | None:
    """The sidebar's experiment picker; the choice follows the ``?experiment=`` link and the session."""
    if not exps:
        return None
    by_key = {e.key: e for e in exps}
    wanted = st.query_params.get("experiment") or st.session_state.get(SESSION_EXPERIMENT)
    current = wanted if wanted in by_key else exps[0].key
    if st.session_state.get(PICKER) != current:
        st.session_state[PICKER] = current
    st.session_state[SESSION_EXPERIMENT] = current
    if st.query_params.get("experiment") != current:
        st.query_params["experiment"] = current
    st.sidebar.selectbox("Experiment", list(by_key), key=PICKER, on_change=_picked,
                         format_func=lambda k: f"{k} ({by_key[k].status})")
    return by_key[current]


def page(*, needs_experiment: bool = True) -> Context:
    """The frame every page starts with: the signed-in client and the chosen experiment (or a stop)."""
    s = settings()
    key, scope = _sign_in(s)
    client = ApiClient(s.api, key)
    with guard():
        exps = experiments(s.api, key)
    chosen = _pick_experiment(exps)
    if needs_experiment and chosen is None:
        st.info("No experiments yet: create one on the Design page (admin key) or "
                "`armor-ab experiment apply FILE`.")
        st.stop()
    return Context(client, scope, exps, chosen)


# ---- rendering helpers -------------------------------------------------------------------------------

def render_content(ctx: Context, content: dict | None, *, image_width: int = 320) -> None:
    """InterleavedContent JSON as a visitor sees it: text and images in order (images from /v1/images)."""
    if not content:
        st.caption("No content for this item: the page keeps its own copy.")
        return
    for seg in content.get("segments") or []:
        if seg.get("type") == "text":
            st.markdown(md_escape(seg.get("text", "")))
        elif seg.get("type") == "image":
            render_image(ctx, seg, image_width=image_width)


def render_image(ctx: Context, seg: dict, *, image_width: int = 320) -> None:
    """One image segment (from /v1/images), or a warning when it is not available."""
    if not seg.get("url"):
        return
    try:
        png = image(ctx.api, seg["url"])
    except (ApiUnavailable, ApiError) as exc:
        st.warning(f"Image {seg.get('sha256', '')[:12]}… not available: {error_text(exc)}")
        return
    st.image(png, width=min(int(seg.get("width") or image_width), image_width))


def render_catalog_item(ctx: Context, item_id: str, *, image_width: int = 192) -> None:
    """The catalog item as imported: photo, name, category, specs and its description (today's copy,
    what control serves), so a generated page can be judged against what it replaces."""
    item = catalog_item(ctx.api, ctx.key, item_id)
    if item is None:
        st.warning(f"{item_id} is not in the catalog (any more): `armor-ab catalog import` adds it.")
        return
    st.subheader(item.name)
    st.caption(f"catalog item {md_escape(item.id)} · {md_escape(item.category)}")
    if item.image:
        try:
            st.image(image(ctx.api, item.image), width=image_width)
        except (ApiUnavailable, ApiError) as exc:
            st.warning(f"The item's photo is not available: {error_text(exc)}")
    else:
        st.caption("No photo in the catalog.")
    if item.specs:
        st.markdown("\n".join(f"- **{md_escape(label)}:** {md_escape(value)}" for label, value in item.specs.items()))
    st.markdown("**Description (today's catalog copy)**")
    st.markdown(md_escape(item.description))


def badge(label: str, color: str) -> None:
    st.badge(label, color=color)  # type: ignore[arg-type]


DECISION_COLORS = {"ship": "green", "keep_running": "blue", "stop": "orange"}


def verdict_box(decision: str | None, headline: str, reasons: tuple[str, ...] | list[str] = ()) -> None:
    """The verdict in plain words: ship (green), keep running (blue), stop (orange); reasons below."""
    text = f"**{decision_label(decision)}** — {md_escape(headline)}"
    {"ship": st.success, "stop": st.warning}.get(decision or "", st.info)(text)
    if reasons:
        with st.expander("Why", expanded=False):
            for r in reasons:
                st.markdown(f"- {md_escape(r)}")


def health_or_none(ctx: Context, experiment: str) -> tuple[ExperimentHealthPublic | None, str | None]:
    """The experiment's live health, or (None, why) when the API refuses it; an API that is down stops the page."""
    try:
        return health(ctx.api, ctx.key, experiment), None
    except ApiUnavailable as exc:
        stop_with(exc)
    except ApiError as exc:
        return None, error_text(exc)


def health_box(ctx: Context, experiment: str | None) -> ExperimentHealthPublic | None:
    """The experiment's health at the top of a page: status and problems; a critical or paused experiment
    is an error box that says why (the pause cause). The health itself is returned (None when unavailable)."""
    if not experiment:
        return None
    h, problem = health_or_none(ctx, experiment)
    if h is None:
        st.warning(f"Health not available: {problem}")
        return None
    b = health_lib.box(h)
    {"error": st.error, "warning": st.warning}.get(b.level, st.success)(health_lib.markdown(b))
    return h

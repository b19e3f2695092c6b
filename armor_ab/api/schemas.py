"""Response and request schemas named by role (``…Public``, ``…Create``) for the OpenAPI docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorPublic(BaseModel):
    error: ErrorDetail


class AssignmentPublic(BaseModel):
    experiment: str
    variant: str | None = Field(description="null when the visitor is outside coverage or the experiment is not running")
    in_experiment: bool
    exposure_id: str | None = Field(
        default=None,
        description="the fixed event id of this visitor's exposure; clients put it in their event batches "
        "(type exposure) so the exposure is durable even if the server's own log of it is lost",
    )


class ContentPublic(AssignmentPublic):
    item_id: str
    source: Literal["armor", "catalog"] = Field(description="armor: generated page; catalog: control's copy")
    fallback: Literal["missing", "unapproved", "guardrail", "generating", "generation_failed", "paused",
                      "unknown_item"] | None = Field(
        description="why the visitor's variant page was not served, when it was not (guardrail: the page "
        "fails a blocking check of the experiment's content_checks, and is never served)")
    server_time: str = Field(description="the server's clock (ISO 8601): clients stamp events on it")
    content: dict | None = Field(
        description="InterleavedContent JSON (format armor-interleaved/1): ordered text and image segments, "
        "images with a url under /v1/images/; null when the item is unknown (keep the page's own copy)")


class StoredContentPublic(BaseModel):
    """A generated page as stored, with its review state (the Content dashboard's rows)."""

    experiment: str
    variant: str
    item_id: str
    status: Literal["pending", "approved", "rejected", "stale"]
    digest: str
    prompt: str | None
    model: str | None
    generated_at: str
    reviewed_at: str | None
    reviewed_by: str | None = Field(description="who set the status: the API key's name (or its id), the CLI's "
                                    "--reviewer, or 'guardrails' (auto-approved); null when never reviewed")
    reviewed_key: str | None = Field(description="the API key id of that review; 'cli' from the command line")
    verdict: Literal["pass", "warn", "fail"] | None = Field(
        description="the guardrails' verdict: fail (a blocking check failed: never served, cannot be approved), "
        "warn (a check did not pass: a human may approve), pass; null when never checked")
    failing: list[str] = Field(description="the checks that did not pass, in order")
    checks: dict | None = Field(description="every check's result: status, action, reason, evidence "
                                "(armor_ab.guardrails PageChecks JSON); null when never checked")
    content: dict = Field(description="InterleavedContent JSON, images with a url under /v1/images/")


class CatalogItemPublic(BaseModel):
    """A catalog item as imported (``armor-ab catalog import``): what the control copy and the prompts read."""

    id: str
    name: str
    category: str
    description: str = Field(description="the control copy: what the catalog page shows today")
    specs: dict[str, str] = Field(description="the key specs, label -> value, in the file's order")
    fields: dict[str, str] = Field(description="every other column of the imported file, as text")
    image: str | None = Field(description="the photo's URL under /v1/images/; null when the item has none")
    image_type: Literal["image/png", "image/jpeg", "image/webp"] | None = Field(
        description="the photo's media type; null when the item has none")


class CatalogItemsPublic(BaseModel):
    """One page of the catalog, in catalog order (the order of the latest import)."""

    items: list[CatalogItemPublic]
    total: int = Field(description="items that match, on every page")
    limit: int
    offset: int


class ContentReviewed(BaseModel):
    changed: int = Field(description="pages whose review state was set")
    status: Literal["approved", "rejected", "pending"]
    skipped: int = Field(default=0, description="pending pages a bulk review left pending: those that fail a "
                         "blocking check (verdict fail, which no one may approve), and with `verdict`, those of "
                         "another verdict")
    unchanged: int = Field(default=0, description="with `verdict`: pages of that verdict already reviewed, left "
                           "as they were (their reviewer kept)")


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    cause: str | None = Field(default=None, description="why it is degraded (the database process is gone, or "
                              "cannot write: disk full, an I/O error, recovering by itself); null when ok")
    writer_alive: bool
    writer_queue: int = Field(description="items waiting for the database writer")
    experiments: int


class ContentReview(BaseModel):
    """A review: one item (with or without a variant), or every item with ``all``; ``verdict`` keeps
    only PENDING pages of that verdict (``{"status": "approved", "all": true, "verdict": "pass"}``: approve
    what passes; pages a human reviewed keep their review). Approving a page that fails a blocking check is refused (409 ``guardrail_failed``); a bulk
    approve skips such pages (``skipped``)."""

    status: Literal["approved", "rejected", "pending"]
    item_id: str | None = Field(default=None, max_length=200)
    variant: str | None = Field(default=None, max_length=200)
    all: bool = False
    verdict: Literal["pass", "warn", "fail"] | None = Field(
        default=None, description="only pages the guardrails gave this verdict")


class ExperimentPublic(BaseModel):
    key: str
    status: Literal["draft", "running", "stopped"]
    bucket_version: int
    effective_seed: str
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    paused_at: str | None = Field(default=None, description="set while its ARMOR arms serve control's copy")
    pause_cause: str | None = Field(default=None, description="why: live health's problems, or a human's cause")
    spec: dict


class QuarantinedExperimentPublic(BaseModel):
    """A stored experiment whose spec does not load: out of service until a valid spec replaces it."""

    key: str
    status: str = Field(description="as stored (draft, running, stopped; anything else is itself the error)")
    bucket_version: int
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    field: str | None = Field(description="the field at fault, as a dotted path; null when the spec is not JSON")
    error: str
    spec: str = Field(description="the stored spec, as is")


class ApiKeyCreate(BaseModel):
    scope: Literal["client", "read", "admin"]
    name: str | None = Field(default=None, max_length=100)


class ApiKeyPublic(BaseModel):
    key_id: str
    scope: str
    name: str | None
    created_at: str
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the secret; shown once, never stored")


ERRORS = {code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409, 413, 422, 503)}


# -- live health, pause and resume (GET /v1/experiments/{key}/health, POST …/pause, …/resume) ----------------


class HealthProblemPublic(BaseModel):
    code: Literal["srm_mismatch", "guardrail_breached", "content_fail_rate", "fallback_rate", "ingestion_lag",
                  "bot_share", "low_exposures", "paused"]
    severity: Literal["warn", "critical"]
    message: str


class SrmHealthPublic(BaseModel):
    """The sequential (anytime-valid) SRM test over daily cumulative looks of first exposures since the start."""

    p_value: float
    threshold: float = Field(description="analysis.srm_alpha: flagged (critical) below it")
    flag: bool
    observed: dict[str, int] = Field(description="included visitors per configured variant")
    expected: dict[str, float]
    looks: int = Field(description="daily looks the running minimum covers")
    visitors: int = Field(description="every visitor first exposed since the start, excluded ones too")
    excluded: dict[str, int] = Field(description="visitors left out as the analysis leaves them out, by reason "
                                     "(client, multi, unknown, user_agent)")


class TrafficHealthPublic(BaseModel):
    exposures_per_hour: int = Field(description="exposures in the last hour (by event time)")
    events_per_hour: int = Field(description="page_view, dwell and inquiry events in the last hour")
    exposures_total: int = Field(description="since the start")
    events_total: int
    since: str | None = Field(description="the start; null when the experiment never ran")
    min_exposures_per_hour: float = Field(description="health.min_exposures_per_hour (0: no floor)")


class FallbackHealthPublic(BaseModel):
    armor_requests: int = Field(description="content requests of visitors in an ARMOR arm since `since`")
    fallbacks: dict[str, int] = Field(description="those served control's copy, by reason")
    rate: float | None = Field(description="fallbacks / requests, leaving out the paused ones; null without requests")
    max_rate: float = Field(description="health.max_fallback_rate")
    window_s: float = Field(description="health.fallback_window_minutes in seconds: the counts cover the current "
                                        "minute and the ones before it")
    since: str = Field(description="where the counts start: the window's first minute, or the server's start "
                                   "when that is later")


class ContentHealthPublic(BaseModel):
    pages: int
    checked: int = Field(description="pages with a guardrail verdict")
    by_verdict: dict[str, int] = Field(description="pass, warn, fail, unchecked")
    by_status: dict[str, int] = Field(description="pending, approved, rejected, stale")
    fail_rate: float | None = Field(description="fail / checked; null when none is checked")
    max_fail_rate: float = Field(description="content_checks.max_fail_rate: critical above it")
    min_checked: int = Field(description="checked pages needed before the fail rate can turn critical")


class IngestionLagPublic(BaseModel):
    events: int = Field(description="client-sent events received in the window")
    p50_s: float | None
    p95_s: float | None
    window_s: float
    max_p95_s: float = Field(description="health.max_ingestion_lag_s")


class BotHealthPublic(BaseModel):
    visitors: int = Field(description="visitors first exposed in the window")
    bots: int = Field(description="of them flagged as known bots")
    share: float | None
    window_s: float
    max_share: float = Field(description="health.max_bot_share")


class GuardrailBreachPublic(BaseModel):
    metric: str
    variant: str
    margin: float
    lower: float | None
    upper: float | None = Field(description="the always-valid upper bound of the relative change: below -margin")


class GuardrailHealthPublic(BaseModel):
    state: Literal["checked", "not_configured", "not_computed", "unavailable"] = Field(
        description="checked: read from the (cached) report; unavailable: the report was refused for its budget")
    breached: list[GuardrailBreachPublic]
    report_age_s: float | None
    message: str | None


class ExperimentHealthPublic(BaseModel):
    """An experiment's live health: ok, warn or critical, with the problems and the numbers behind them."""

    experiment: str
    experiment_status: Literal["draft", "running", "stopped"]
    status: Literal["ok", "warn", "critical"]
    checked_at: str
    auto_pause: bool = Field(description="health.auto_pause: the monitor pauses it when critical")
    paused: bool
    paused_at: str | None
    pause_cause: str | None
    problems: list[HealthProblemPublic]
    srm: SrmHealthPublic
    traffic: TrafficHealthPublic
    fallback: FallbackHealthPublic
    content: ContentHealthPublic
    ingestion_lag: IngestionLagPublic
    bots: BotHealthPublic
    guardrails: GuardrailHealthPublic


class PauseCreate(BaseModel):
    cause: str = Field(min_length=1, max_length=1000, description="why: kept in the experiment's history")


class ResumeCreate(BaseModel):
    note: str | None = Field(default=None, max_length=1000, description="kept in the experiment's history")


class PauseStatePublic(BaseModel):
    key: str
    status: Literal["draft", "running", "stopped"]
    paused: bool
    paused_at: str | None
    pause_cause: str | None
    changed: bool = Field(description="false when it already was in that state (a second pause keeps the first cause)")

"""Prometheus metrics of one server (its own registry, so tests can build many apps in one process), and the
recent ARMOR-arm content answers the live health reads its fallback rate from (``FallbackWindow``)."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from armor_ab.experiments.content_checks import MAX_FALLBACK_WINDOW_MINUTES

# One sample of an experiment's health series: the gauge, its labels after ``experiment``, the value.
HealthSample = tuple[Gauge, tuple[str, ...], float]


@dataclass(frozen=True)
class WindowCounts:
    """An experiment's ARMOR-arm content answers over a trailing window (``FallbackWindow.read``)."""

    requests: int  # content requests of visitors in an ARMOR arm
    fallbacks: dict[str, int]  # of them served control's copy, by reason
    since: float  # Unix time the counts start: the window's first minute, or the server's start if later


class _Ring:
    """One experiment's per-minute counts: slot ``m % size`` holds minute ``m`` (Unix time // 60) while
    ``stamps`` says so; an older minute's slot is zeroed when a new minute takes it."""

    __slots__ = ("by_reason", "requests", "stamps")

    def __init__(self, size: int) -> None:
        self.stamps = array("q", [-1]) * size
        self.requests = array("q", [0]) * size
        self.by_reason: dict[str, array] = {}  # reason -> per-slot counts (a handful of reasons)

    def slot(self, minute: int) -> int:
        i = minute % len(self.stamps)
        if self.stamps[i] != minute:
            self.stamps[i] = minute
            self.requests[i] = 0
            for counts in self.by_reason.values():
                counts[i] = 0
        return i


class FallbackWindow:
    """The ARMOR-arm content answers of the last ``minutes`` (a day by default), by experiment and minute.

    Fixed memory whatever the traffic: a ring of per-minute buckets per experiment (two integers a minute,
    and one per fallback reason seen). ``clock`` (Unix seconds) is the time of a count or read without an
    explicit ``now``; the window starts counting at its construction (the server's start). Counted on the
    event loop, like the Prometheus counters beside it."""

    def __init__(self, minutes: int = MAX_FALLBACK_WINDOW_MINUTES, clock: Callable[[], float] = time.time) -> None:
        if minutes < 1:
            raise ValueError(f"a window keeps at least one minute, got {minutes}")
        self.minutes = minutes
        self.clock = clock
        self.started = clock()
        self._rings: dict[str, _Ring] = {}

    def count(self, experiment: str, fallback: str | None, now: float | None = None) -> None:
        """One content answer to a visitor of an ARMOR arm: its page (``fallback`` None) or control's copy."""
        ring = self._rings.get(experiment)
        if ring is None:
            ring = self._rings[experiment] = _Ring(self.minutes)
        i = ring.slot(int((self.clock() if now is None else now) // 60))
        ring.requests[i] += 1
        if fallback is not None:
            counts = ring.by_reason.get(fallback)
            if counts is None:
                counts = ring.by_reason[fallback] = array("q", [0]) * self.minutes
            counts[i] += 1

    def read(self, experiment: str, minutes: int, now: float | None = None) -> WindowCounts:
        """The answers of the current minute and the ``minutes - 1`` before it (so between ``minutes - 1``
        and ``minutes`` of them; at most the ring's)."""
        now = self.clock() if now is None else now
        minutes = max(1, min(minutes, self.minutes))
        last = int(now // 60)
        first = last - minutes + 1
        since = max(self.started, first * 60.0)
        ring = self._rings.get(experiment)
        if ring is None:
            return WindowCounts(0, {}, since)
        requests = 0
        fallbacks = dict.fromkeys(ring.by_reason, 0)
        for minute in range(first, last + 1):
            i = minute % self.minutes
            if ring.stamps[i] != minute:
                continue
            requests += ring.requests[i]
            for reason, counts in ring.by_reason.items():
                fallbacks[reason] += counts[i]
        return WindowCounts(requests, {r: n for r, n in fallbacks.items() if n}, since)


class Metrics:
    """Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

    def __init__(self, writer_depth: Callable[[], float], clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "armor_ab_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "armor_ab_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.queue_depth = Gauge("armor_ab_writer_queue_depth", "items waiting for the writer", registry=self.registry)
        self.queue_depth.set_function(writer_depth)
        self.events_committed = Counter(
            "armor_ab_events_committed_total", "new events committed to DuckDB", registry=self.registry
        )
        self.late_lookups = Counter(
            "armor_ab_events_late_lookups_total",
            "events looked up in the table because they were older than the dedup window (docs/events.md)",
            registry=self.registry,
        )
        self.db_memory = Gauge(
            "armor_ab_db_memory_bytes",
            "memory DuckDB accounts for in the database process, by tag (base_table: cached table blocks, "
            "evictable up to the buffer pool limit); sampled every 5 s",
            ["tag"], registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "armor_ab_writer_commit_seconds", "duration of one writer transaction", registry=self.registry
        )
        self.queue_full = Counter(
            "armor_ab_writer_queue_full_total", "requests refused with 503 because the queue was full",
            registry=self.registry,
        )
        self.exposures_deferred = Counter(
            "armor_ab_exposures_deferred_total",
            "exposures not queued (writer queue full) or not committed; logged again on the visitor's next request",
            registry=self.registry,
        )
        # Both by experiment: the live health of each experiment reads its own fallback rate.
        self.content_fallback = Counter(
            "armor_ab_content_fallback_total",
            "content requests of an ARMOR arm served control copy instead, by experiment and reason "
            "(missing, unapproved, generating, generation_failed, guardrail, paused)",
            ["experiment", "reason"], registry=self.registry,
        )
        self.content_armor_requests = Counter(
            "armor_ab_content_armor_requests_total",
            "content requests of visitors in an ARMOR arm (the denominator of the fallback rate), by experiment",
            ["experiment"], registry=self.registry,
        )
        # The same answers over the last minutes, for the health check's fallback rate: the counters above
        # count since the server started (as Prometheus wants), which a recent outage would barely move.
        self.fallback_window = FallbackWindow(clock=clock)
        self.events_refused = Counter(
            "armor_ab_events_refused_total",
            "client events refused one by one (the rest of their batch committed), by reason",
            ["reason"], registry=self.registry,
        )
        self.keys_revoked = Counter(
            "armor_ab_keys_revoked_total", "API keys revoked (DELETE /v1/keys/{id})", registry=self.registry
        )
        self._health_gauges()

    def _health_gauges(self) -> None:
        """The live health of each running experiment (``armor_ab.services.health``), labelled by experiment:
        set by the health monitor every ``health_interval_s`` and by each ``GET …/health``. A value that is
        undefined (no client events to time, no checked pages, ...) has no series; an experiment that is
        not running has none at all. deploy/prometheus/alerts.yml alerts on them."""
        exp, r = ["experiment"], self.registry

        def gauge(name: str, doc: str, labels: list[str] = exp) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        self.health_status = gauge("armor_ab_experiment_health_status",
                                   "live health of a running experiment: 0 ok, 1 warn, 2 critical")
        self.health_problem = gauge("armor_ab_experiment_health_problem",
                                    "1 for each current problem of the experiment's live health, by code and severity",
                                    ["experiment", "code", "severity"])
        self.health_threshold = gauge("armor_ab_experiment_health_threshold",
                                      "the experiment's own health thresholds (its spec's analysis.srm_alpha, "
                                      "content_checks.max_fail_rate and health.*), by check", ["experiment", "check"])
        self.health_checked = gauge("armor_ab_experiment_health_checked_timestamp_seconds",
                                    "when the experiment's health was last computed (Unix time)")
        self.srm_p_value = gauge("armor_ab_experiment_srm_p_value",
                                 "anytime-valid (sequential) sample-ratio-mismatch p-value over daily looks since the start")
        self.exposures_per_hour = gauge("armor_ab_experiment_exposures_per_hour", "exposures in the last hour")
        self.events_per_hour = gauge("armor_ab_experiment_events_per_hour",
                                     "page_view, dwell and inquiry events in the last hour")
        self.ingestion_lag = gauge("armor_ab_experiment_ingestion_lag_seconds",
                                   "received_at - ts of the client-sent events received in the last 15 minutes, "
                                   "by quantile (0.5, 0.95)", ["experiment", "quantile"])
        self.bot_share = gauge("armor_ab_experiment_bot_share",
                               "share of the visitors first exposed in the last 24 h that are known bots")
        self.content_fail_rate = gauge("armor_ab_content_guardrail_fail_rate",
                                       "share of the experiment's checked pages whose guardrail verdict is fail")
        self.content_pages = gauge("armor_ab_content_pages",
                                   "stored pages of the experiment by guardrail verdict (unchecked: never checked)",
                                   ["experiment", "verdict"])
        self.guardrail_breached = gauge("armor_ab_experiment_guardrail_breached",
                                        "1 when a guardrail metric is breached in the cached report (its always-valid "
                                        "bound is past the margin), else 0; absent while no report could be computed")
        self.paused = gauge("armor_ab_experiment_paused",
                            "1 while the experiment's ARMOR arms serve control's copy (paused by health or a human)")
        self.health_failures = Counter(
            "armor_ab_health_checks_failed_total",
            "health checks of the monitor that raised (logged; the monitor carries on)", registry=r,
        )
        self._health_series: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    def set_health(self, experiment: str, samples: Iterable[HealthSample]) -> None:
        """Replace the experiment's health series with ``samples`` (series not among them are removed)."""
        samples = list(samples)
        new = {(g, labels) for g, labels, _ in samples}
        for g, labels in self._health_series.get(experiment, set()) - new:
            g.remove(experiment, *labels)
        for g, labels, value in samples:
            g.labels(experiment, *labels).set(value)
        self._health_series[experiment] = new

    def clear_health(self, experiment: str) -> None:
        """Remove every health series of the experiment (it stopped, or is gone)."""
        self.set_health(experiment, ())
        self._health_series.pop(experiment, None)

    def health_experiments(self) -> set[str]:
        """The experiments that have health series now."""
        return set(self._health_series)

    def count_armor_content(self, experiment: str, fallback: str | None) -> None:
        """One content answer to a visitor of an ARMOR arm: its page (``fallback`` None) or control's copy."""
        self.content_armor_requests.labels(experiment).inc()
        if fallback is not None:
            self.content_fallback.labels(experiment, fallback).inc()
        self.fallback_window.count(experiment, fallback)

"""Prometheus metrics of one server (its own registry, so tests can build many apps in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

    def __init__(self, writer_depth: Callable[[], float]) -> None:
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
        # The same counts as plain numbers for the health check (reading a Counter back is private API).
        self.armor_requests: dict[str, int] = {}
        self.fallbacks: dict[str, dict[str, int]] = {}
        self.events_refused = Counter(
            "armor_ab_events_refused_total",
            "client events refused one by one (the rest of their batch committed), by reason",
            ["reason"], registry=self.registry,
        )
        self.keys_revoked = Counter(
            "armor_ab_keys_revoked_total", "API keys revoked (DELETE /v1/keys/{id})", registry=self.registry
        )

    def count_armor_content(self, experiment: str, fallback: str | None) -> None:
        """One content answer to a visitor of an ARMOR arm: its page (``fallback`` None) or control's copy."""
        self.content_armor_requests.labels(experiment).inc()
        self.armor_requests[experiment] = self.armor_requests.get(experiment, 0) + 1
        if fallback is not None:
            self.content_fallback.labels(experiment, fallback).inc()
            by_reason = self.fallbacks.setdefault(experiment, {})
            by_reason[fallback] = by_reason.get(fallback, 0) + 1

"""The live health of an experiment, and the monitor that pauses a critical one.

``HealthService.check(key)`` (``GET /v1/experiments/{key}/health``) reads, for one experiment:

* **SRM**: the sequential (anytime-valid) test of ``armor_ab.stats.srm`` over daily cumulative looks of
  the visitors' first exposures since the start, counted as the analysis counts them
  (``armor_ab.store.health``: ``analysis.exposures``, multi-variant, unknown-variant and bot exclusions);
* **traffic**: exposures and events over the last hour (by event time) and since the start;
* **fallbacks**: the share of ARMOR-arm content requests served control's copy, by reason, over the last
  ``health.fallback_window_minutes`` (``Metrics.fallback_window``: per-minute counts of this server, so
  since its start when that is more recent; ``paused`` answers are left out of the rate: the pause is a
  problem of its own);
* **content**: the experiment's pages by review status and guardrail verdict; the fail rate is
  ``fail`` / pages checked (a verdict set);
* **ingestion lag**: p50 and p95 of ``received_at - ts`` of the client-sent events received in the
  last 15 minutes (the server's own exposures have none);
* **bots**: the share of the visitors first exposed in the last 24 hours that are known bots;
* **guardrail metrics**: breached in the report (``services.reports``: the cached one; a stale one is
  recomputed at most every ``report_max_age``, a report refused for its budget is not tried again
  for ``REPORT_RETRY_S``); only for experiments that declare guardrail metrics.

Each becomes a ``Problem`` when past the experiment's thresholds. **Critical**: the sequential SRM
flag (``analysis.srm_alpha``), a guardrail metric breached, the content fail rate over
``content_checks.max_fail_rate`` (with at least ``MIN_CHECKED_PAGES`` checked). **Warn**: the fallback
rate over ``health.max_fallback_rate``, lag p95 over ``health.max_ingestion_lag_s``, bot share over
``health.max_bot_share``, fewer exposures in the last hour than ``health.min_exposures_per_hour``, and
a paused experiment. The status is the worst severity (``ok`` without problems).

The **monitor** (``run``, started in the API's lifespan) checks every running experiment every
``health_interval_s`` and publishes the result as Prometheus series (``Metrics.set_health``). A
critical experiment whose spec says ``health.auto_pause`` is paused (its ARMOR arms serve control's
copy; ``store.experiments.set_paused`` with ``by="health"`` and the critical problems as the cause).
It never resumes one: a human does (API, CLI, dashboards). A human resume through the API acknowledges
the critical problems of that moment: the monitor pauses again only for a critical problem not among
them, and forgets them once the experiment is no longer critical. Both are kept in the experiment's
history, so a restarted server goes on where it was: the resume's note ends with the codes
(``[acknowledged: ...]``; ``store.experiments.acknowledgement`` reads them back on the monitor's first
round for the experiment), and the end is a row of its own (``acknowledgement_end``); a pause, stop,
start or repair after the resume ends it too. The monitor reads through the database process's read
pool, never the writer, and a failing check is logged and counted
(``armor_ab_health_checks_failed_total``), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from armor_ab.services.assignment import live_experiment
from armor_ab.services.errors import ServiceError
from armor_ab.services.reports import report_json
from armor_ab.services.state import AppState
from armor_ab.stats.srm import sequential_srm
from armor_ab.store.experiments import ExperimentRecord, acknowledgement, end_acknowledgement, set_paused
from armor_ab.store.health import HealthReads, health_reads

log = logging.getLogger("armor_ab.health")

SEVERITY = {"ok": 0, "warn": 1, "critical": 2}
MIN_CHECKED_PAGES = 5  # the content fail rate turns critical only over at least this many checked pages
MIN_FALLBACK_REQUESTS = 20  # ARMOR-arm content requests (not paused) before the fallback rate warns
MIN_BOT_VISITORS = 20  # recent visitors before the bot share warns
BOT_WINDOW = timedelta(hours=24)
LAG_WINDOW = timedelta(minutes=15)
REPORT_RETRY_S = 600.0  # a report refused for its budget is not asked again for this long
BUDGET_REFUSALS = frozenset({"report_timeout", "report_too_large"})  # services.reports' budget errors
PAUSED_BY = "health"  # who the history names for the monitor's pauses


@dataclass(frozen=True)
class Problem:
    code: str  # srm_mismatch | guardrail_breached | content_fail_rate | fallback_rate | ingestion_lag | ...
    severity: str  # warn | critical
    message: str

    def public(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GuardrailHealth:
    """The guardrail metrics as the report judged them."""

    state: str  # checked | not_configured | not_computed | unavailable
    breached: tuple[dict, ...] = ()
    report_age_s: float | None = None
    message: str | None = None

    def public(self) -> dict:
        return {"state": self.state, "breached": list(self.breached), "report_age_s": self.report_age_s,
                "message": self.message}


@dataclass(frozen=True)
class ExperimentHealth:
    experiment: str
    experiment_status: str
    record_updated_at: datetime  # the record it was computed for (a pause decided on it needs it unchanged)
    checked_at: datetime
    auto_pause: bool
    paused_at: datetime | None
    pause_cause: str | None
    problems: tuple[Problem, ...]
    srm: dict
    traffic: dict
    fallback: dict
    content: dict
    ingestion_lag: dict
    bots: dict
    guardrails: GuardrailHealth

    @property
    def status(self) -> str:
        worst = max((SEVERITY[p.severity] for p in self.problems), default=0)
        return next(s for s, v in SEVERITY.items() if v == worst)

    @property
    def critical(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "critical")

    def public(self) -> dict:
        """The JSON of ``GET …/health`` (``ExperimentHealthPublic``)."""
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {
            "experiment": self.experiment, "experiment_status": self.experiment_status, "status": self.status,
            "checked_at": iso(self.checked_at), "auto_pause": self.auto_pause,
            "paused": self.paused_at is not None, "paused_at": iso(self.paused_at), "pause_cause": self.pause_cause,
            "problems": [p.public() for p in self.problems],
            "srm": self.srm, "traffic": self.traffic, "fallback": self.fallback, "content": self.content,
            "ingestion_lag": self.ingestion_lag, "bots": self.bots, "guardrails": self.guardrails.public(),
        }


def _window(record: ExperimentRecord, now: datetime) -> tuple[datetime | None, datetime]:
    """The analysis window (as the report's): [started_at, stopped_at or now]."""
    end = now if record.stopped_at is None else min(record.stopped_at, now)
    start = record.started_at
    if start is not None and start > end:
        end = start
    return start, end


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%".replace(".0%", "%")


def assess(
    record: ExperimentRecord, reads: HealthReads, armor_requests: int, fallbacks: dict[str, int],
    guardrails: GuardrailHealth, now: datetime, fallback_since: datetime,
) -> ExperimentHealth:
    """The health of ``record`` from what was read: its numbers, its problems and status. ``armor_requests``
    and ``fallbacks`` are counted over the last ``health.fallback_window_minutes``, from ``fallback_since``."""
    spec, h = record.spec, record.spec.health
    problems: list[Problem] = []

    weights = {v.key: v.weight for v in spec.variants}
    srm = sequential_srm(reads.looks(list(weights)), weights, spec.analysis.srm_alpha)
    if srm.flag:
        observed = ", ".join(f"{k} {n:,}" for k, n in srm.observed.items())
        planned = ", ".join(f"{k} {_pct(w / sum(weights.values()))}" for k, w in weights.items())
        problems.append(Problem("srm_mismatch", "critical",
                                f"sample ratio mismatch: visitors {observed} against the planned {planned} "
                                f"(sequential p = {srm.p_value:.2g} < {spec.analysis.srm_alpha:g})"))

    for b in guardrails.breached:
        problems.append(Problem("guardrail_breached", "critical",
                                f"guardrail metric {b['metric']} breached in {b['variant']}: its change is at most "
                                f"{b['upper']:+.1%} against a margin of -{_pct(b['margin'])}"))

    by_verdict = reads.pages_by_verdict
    checked = sum(by_verdict.get(v, 0) for v in ("pass", "warn", "fail"))
    fail_rate = by_verdict.get("fail", 0) / checked if checked else None
    max_fail = spec.content_checks.max_fail_rate
    if fail_rate is not None and checked >= MIN_CHECKED_PAGES and fail_rate > max_fail:
        problems.append(Problem("content_fail_rate", "critical",
                                f"{by_verdict.get('fail', 0):,} of {checked:,} checked pages fail a blocking content "
                                f"check ({_pct(fail_rate)} > {_pct(max_fail)})"))

    paused_answers = fallbacks.get("paused", 0)
    served = armor_requests - paused_answers
    fell_back = sum(fallbacks.values()) - paused_answers
    fallback_rate = fell_back / served if served > 0 else None
    if fallback_rate is not None and served >= MIN_FALLBACK_REQUESTS and fallback_rate > h.max_fallback_rate:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(fallbacks.items()) if r != "paused" and n)
        problems.append(Problem("fallback_rate", "warn",
                                f"{fell_back:,} of {served:,} ARMOR content requests of the last "
                                f"{h.fallback_window_minutes} min served control's copy "
                                f"({_pct(fallback_rate)} > {_pct(h.max_fallback_rate)}; {reasons})"))

    if reads.lag_p95_s is not None and reads.lag_p95_s > h.max_ingestion_lag_s:
        problems.append(Problem("ingestion_lag", "warn",
                                f"client events arrive late: p95 of received_at - ts is {reads.lag_p95_s:,.0f} s "
                                f"(> {h.max_ingestion_lag_s:g} s) over {reads.lag_events:,} events"))

    bot_share = reads.recent_bots / reads.recent_visitors if reads.recent_visitors else None
    if bot_share is not None and reads.recent_visitors >= MIN_BOT_VISITORS and bot_share > h.max_bot_share:
        problems.append(Problem("bot_share", "warn",
                                f"{reads.recent_bots:,} of {reads.recent_visitors:,} visitors of the last 24 h are known "
                                f"bots ({_pct(bot_share)} > {_pct(h.max_bot_share)})"))

    running_an_hour = (record.status == "running" and record.started_at is not None
                       and record.started_at <= now - timedelta(hours=1))
    if h.min_exposures_per_hour > 0 and running_an_hour and reads.exposures_last_hour < h.min_exposures_per_hour:
        problems.append(Problem("low_exposures", "warn",
                                f"{reads.exposures_last_hour:,} exposures in the last hour "
                                f"(< {h.min_exposures_per_hour:g} per hour)"))

    if record.paused_at is not None:
        problems.append(Problem("paused", "warn",
                                f"paused since {record.paused_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}: its ARMOR arms serve "
                                f"control's copy until someone resumes it ({record.pause_cause})"))

    start, _ = _window(record, now)
    return ExperimentHealth(
        experiment=record.key, experiment_status=record.status, record_updated_at=record.updated_at,
        checked_at=now, auto_pause=h.auto_pause, paused_at=record.paused_at, pause_cause=record.pause_cause,
        problems=tuple(problems),
        srm={"p_value": srm.p_value, "threshold": srm.threshold, "flag": srm.flag, "observed": srm.observed,
             "expected": srm.expected, "looks": srm.looks, "visitors": reads.visitors, "excluded": reads.excluded},
        traffic={"exposures_per_hour": reads.exposures_last_hour, "events_per_hour": reads.events_last_hour,
                 "exposures_total": reads.exposures_total, "events_total": reads.events_total,
                 "since": start.isoformat() if start else None, "min_exposures_per_hour": h.min_exposures_per_hour},
        fallback={"armor_requests": armor_requests, "fallbacks": dict(fallbacks), "rate": fallback_rate,
                  "max_rate": h.max_fallback_rate, "window_s": h.fallback_window_minutes * 60.0,
                  "since": fallback_since.isoformat()},
        content={"pages": sum(reads.pages_by_status.values()), "checked": checked, "by_verdict": dict(by_verdict),
                 "by_status": dict(reads.pages_by_status), "fail_rate": fail_rate, "max_fail_rate": max_fail,
                 "min_checked": MIN_CHECKED_PAGES},
        ingestion_lag={"events": reads.lag_events, "p50_s": reads.lag_p50_s, "p95_s": reads.lag_p95_s,
                       "window_s": LAG_WINDOW.total_seconds(), "max_p95_s": h.max_ingestion_lag_s},
        bots={"visitors": reads.recent_visitors, "bots": reads.recent_bots, "share": bot_share,
              "window_s": BOT_WINDOW.total_seconds(), "max_share": h.max_bot_share},
        guardrails=guardrails,
    )


@dataclass
class HealthService:
    """One server's health checks, the monitor, and what they remember (acknowledged problems, refusals)."""

    state: AppState
    last: dict[str, ExperimentHealth] = field(default_factory=dict)
    _acknowledged: dict[str, frozenset[str]] = field(default_factory=dict)
    _restored: set[str] = field(default_factory=set)  # experiments whose acknowledgement was read from the store
    _refused: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (monotonic time, message)
    _parsed: dict[str, tuple[bytes, tuple[dict, ...]]] = field(default_factory=dict)  # key -> (report, breaches)
    _stopping: asyncio.Event | None = None  # made by ``run``, in the loop it runs in

    # -- one experiment ---------------------------------------------------------------------------
    async def check(self, key: str, *, report: bool = True) -> ExperimentHealth:
        """The experiment's health now (404 ``experiment_not_found``); its series in /metrics are updated.

        ``report=False`` reads no report: the guardrail metrics are the last check's."""
        record = live_experiment(self.state, key).record
        now = datetime.now(UTC)
        start, end = _window(record, now)
        spec = record.spec
        reads = await self.state.read(
            health_reads, key, start=start, end=end, now=now, variants=[v.key for v in spec.variants],
            exposures=spec.analysis.exposures, bot_user_agents=spec.analysis.bots.user_agents,
            recent_from=now - BOT_WINDOW, lag_from=now - LAG_WINDOW,
        )
        if report:
            guardrails = await self._guardrails(record)
        else:
            last = self.last.get(key)
            guardrails = last.guardrails if last is not None else GuardrailHealth("not_computed")
        recent = self.state.metrics.fallback_window.read(key, spec.health.fallback_window_minutes, now.timestamp())
        health = assess(record, reads, recent.requests, recent.fallbacks, guardrails, now,
                        datetime.fromtimestamp(recent.since, UTC))
        self.last[key] = health
        self.publish(health)
        return health

    async def _guardrails(self, record: ExperimentRecord) -> GuardrailHealth:
        key = record.key
        if not record.spec.metrics.guardrails:
            return GuardrailHealth("not_configured")
        if record.started_at is None:
            return GuardrailHealth("not_computed", message="the experiment has not started")
        refused = self._refused.get(key)
        if refused is not None and time.monotonic() - refused[0] < REPORT_RETRY_S:
            return GuardrailHealth("unavailable", message=refused[1])
        try:
            body, age = await report_json(self.state, key)
        except ServiceError as exc:
            if exc.code == "experiment_not_found":
                raise
            message = f"the report could not be computed ({exc.code}): {exc.message}"
            if exc.code in BUDGET_REFUSALS:  # too big for its budget: not asked again for a while
                self._refused[key] = (time.monotonic(), message)
            return GuardrailHealth("unavailable", message=message)
        self._refused.pop(key, None)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is body:
            breached = cached[1]
        else:
            breached = tuple(
                {"metric": r["metric"], "variant": r["variant"], "margin": g["margin"],
                 "lower": g["sequential_lower"], "upper": g["sequential_upper"]}
                for r in json.loads(body).get("results", [])
                if (g := r.get("guardrail")) and g.get("state") == "breached"
            )
            self._parsed[key] = (body, breached)
        return GuardrailHealth("checked", breached, round(age, 1))

    def publish(self, health: ExperimentHealth) -> None:
        """The health as Prometheus series: a running experiment's, replacing its previous ones; an experiment
        that is not running has none."""
        m = self.state.metrics
        if health.experiment_status != "running":
            m.clear_health(health.experiment)
            return
        samples = [
            (m.health_status, (), SEVERITY[health.status]),
            (m.health_checked, (), health.checked_at.timestamp()),
            (m.srm_p_value, (), health.srm["p_value"]),
            (m.exposures_per_hour, (), health.traffic["exposures_per_hour"]),
            (m.events_per_hour, (), health.traffic["events_per_hour"]),
            (m.paused, (), 1.0 if health.paused_at is not None else 0.0),
        ]
        samples += [(m.health_problem, (code, severity), 1.0)
                    for code, severity in dict.fromkeys((p.code, p.severity) for p in health.problems)]
        thresholds = {"srm_alpha": health.srm["threshold"], "content_max_fail_rate": health.content["max_fail_rate"],
                      "max_fallback_rate": health.fallback["max_rate"],
                      "max_ingestion_lag_s": health.ingestion_lag["max_p95_s"],
                      "max_bot_share": health.bots["max_share"],
                      "min_exposures_per_hour": health.traffic["min_exposures_per_hour"]}
        samples += [(m.health_threshold, (check,), value) for check, value in thresholds.items()]
        lag = health.ingestion_lag
        if lag["p50_s"] is not None:
            samples += [(m.ingestion_lag, ("0.5",), lag["p50_s"]), (m.ingestion_lag, ("0.95",), lag["p95_s"])]
        if health.bots["share"] is not None:
            samples.append((m.bot_share, (), health.bots["share"]))
        if health.content["fail_rate"] is not None:
            samples.append((m.content_fail_rate, (), health.content["fail_rate"]))
        samples += [(m.content_pages, (verdict,), n) for verdict, n in health.content["by_verdict"].items()]
        if health.guardrails.state == "checked":
            samples.append((m.guardrail_breached, (), 1.0 if health.guardrails.breached else 0.0))
        m.set_health(health.experiment, samples)

    # -- the monitor ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the monitor to stop after the check in progress (the API's shutdown)."""
        if self._stopping is not None:
            self._stopping.set()

    async def run(self, interval: float) -> None:
        """Check every running experiment every ``interval`` seconds until ``stop``; never raises otherwise."""
        log.info("health monitor started", extra={"interval_s": interval})
        stopping = self._stopping = asyncio.Event()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if stopping.is_set():
                break
            try:
                await self.check_running()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the monitor must outlive any one failure
                self.state.metrics.health_failures.inc()
                log.exception("health monitor round failed")

    async def _shielded(self, key: str) -> ExperimentHealth:
        """``check`` in a task of its own that a cancelled or timed-out monitor does not cancel: a read of the
        database process cancelled mid-flight would leave its answer nowhere to go."""
        task = asyncio.ensure_future(self.check(key))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, even when nobody waits
        return await asyncio.wait_for(asyncio.shield(task), self.state.settings.report_timeout_s + 60.0)

    async def check_running(self) -> None:
        """One round: check each running experiment, pause the critical ones that ask for it."""
        running = [k for k, e in self.state.experiments.items() if e.record.status == "running"]
        for key in running:
            if self._stopping is not None and self._stopping.is_set():
                return
            try:
                health = await self._shielded(key)
                await self.protect(health)
            except asyncio.CancelledError:
                raise
            except ServiceError as exc:
                if exc.code == "experiment_not_found":
                    continue
                self.state.metrics.health_failures.inc()
                log.warning("health check failed", extra={"experiment": key, "code": exc.code, "error": exc.message})
            except Exception:  # noqa: BLE001 - logged and counted; the next experiment is still checked
                self.state.metrics.health_failures.inc()
                log.exception("health check failed", extra={"experiment": key})
        for key in self.state.metrics.health_experiments() - set(running):
            self.state.metrics.clear_health(key)
        for key in set(self._acknowledged) - set(running):
            del self._acknowledged[key]
        self._restored &= set(running)

    async def protect(self, health: ExperimentHealth) -> bool:
        """Pause the experiment when its health is critical and its spec says ``auto_pause``, unless a human
        resumed it over these same problems. Returns whether it paused it."""
        key = health.experiment
        if key not in self._restored:
            await self._restore(key)
        if health.status != "critical":
            ended = self._acknowledged.pop(key, None)
            if ended:
                await self._end(key, ended)
            return False
        live = self.state.experiments.get(key)
        if live is None or not health.auto_pause:
            return False
        record = live.record
        if record.status != "running" or record.paused_at is not None:
            return False
        if record.updated_at != health.record_updated_at:
            return False  # it changed meanwhile (a human resumed it, ...): the next round decides afresh
        codes = frozenset(p.code for p in health.critical)
        if codes <= self._acknowledged.get(key, frozenset()):
            return False
        cause = "; ".join(p.message for p in health.critical)
        # Shielded like the reads: a shutdown must not cancel the write's answer in flight.
        _, changed = await asyncio.shield(self.state.write(set_paused, key, True, cause=cause, by=PAUSED_BY))
        if changed:
            log.warning("experiment paused by its live health: its ARMOR arms serve control's copy until a human "
                        "resumes it", extra={"experiment": key, "problems": sorted(codes), "cause": cause})
            self.publish_paused(key)
        return changed

    def publish_paused(self, key: str) -> None:
        """Update the paused series at once (the next check refreshes the rest)."""
        live = self.state.experiments.get(key)
        if live is not None and live.record.status == "running" and key in self.state.metrics.health_experiments():
            self.state.metrics.paused.labels(key).set(1.0 if live.record.paused_at is not None else 0.0)

    async def _restore(self, key: str) -> None:
        """The acknowledgement of the experiment's last resume, from its history (a restarted server's first
        round); one this server made meanwhile stays. A failing read is tried again next round."""
        try:
            codes = await self.state.read(acknowledgement, key)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - without it the monitor may pause again; the log says why
            self.state.metrics.health_failures.inc()
            log.exception("the acknowledgement of the last resume could not be read", extra={"experiment": key})
            return
        self._restored.add(key)
        if codes:
            self._acknowledged.setdefault(key, codes)

    async def _end(self, key: str, codes: frozenset[str]) -> None:
        """The experiment is no longer critical: its acknowledged problems pause it again should they return,
        after a restart too (the history says the acknowledgement ended)."""
        log.info("the problems acknowledged at the resume are over", extra={"experiment": key,
                                                                           "problems": sorted(codes)})
        try:
            await asyncio.shield(self.state.write(end_acknowledgement, key, codes, by=PAUSED_BY))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a restart would restore it; the log says so
            self.state.metrics.health_failures.inc()
            log.exception("the end of an acknowledgement could not be recorded", extra={"experiment": key})

    async def to_acknowledge(self, key: str) -> frozenset[str]:
        """The critical problems a human resuming the experiment now acknowledges: the last check's and a
        fresh one's (without a report: a resume must not wait for one)."""
        seen = self.last.get(key)
        codes = {p.code for p in seen.critical} if seen is not None else set()
        try:
            health = await self.check(key, report=False)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the resume goes on with what the last check saw
            log.exception("resuming without a fresh health check", extra={"experiment": key})
        else:
            codes |= {p.code for p in health.critical}
        return frozenset(codes)

    def acknowledge(self, key: str, codes: frozenset[str]) -> None:
        """A human resumed the experiment over ``codes`` (``to_acknowledge``; the resume's history row holds
        them): they no longer pause it, until it is no longer critical or another critical problem appears."""
        self._restored.add(key)  # this server's word is the history's newest
        if codes:
            self._acknowledged[key] = codes
        else:
            self._acknowledged.pop(key, None)

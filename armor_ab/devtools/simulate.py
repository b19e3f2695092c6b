"""A traffic simulator that drives realistic visitors through the real HTTP API.

Each visitor is assigned by ``GET …/assignment`` (which logs the exposure), views a few catalog
pages (lognormal dwell per view), may send an inquiry (Bernoulli), and posts its events in
batches, retrying on failure with the same event ids, and sometimes re-sending a batch that
already succeeded, as flaky mobile clients do. A known true effect is applied to every
non-control variant, so the analysis can be checked against the truth.

Visitors browse the catalog the server serves: ``fetch_catalog`` lists its items (id, category)
through ``GET /v1/catalog/items`` with a read-scope key, once before the first visitor; a page view
names an item and its category, as the snippet on a real catalog page does.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

CATALOG_PAGE = 500  # items per request: the API's largest page


class CatalogUnavailable(RuntimeError):
    """The API lists no catalog items (none imported), or the key cannot read them."""


def fetch_catalog(api: str, read_key: str, *, timeout: float = 30.0) -> tuple[tuple[str, str], ...]:
    """Every (item id, category) of the catalog the API serves, in catalog order, a page at a time."""
    items: list[tuple[str, str]] = []
    with httpx.Client(base_url=api.rstrip("/"), headers={"Authorization": f"Bearer {read_key}"},
                      timeout=timeout) as client:
        while True:
            r = client.get("/v1/catalog/items", params={"limit": CATALOG_PAGE, "offset": len(items)})
            if r.status_code in (401, 403):
                raise CatalogUnavailable(f"GET /v1/catalog/items: {r.status_code}: the catalog needs a read-scope key")
            r.raise_for_status()
            body = r.json()
            items += [(item["id"], item["category"]) for item in body["items"]]
            if not body["items"] or len(items) >= body["total"]:
                break
    if not items:
        raise CatalogUnavailable("the API serves no catalog items: import a catalog (armor-ab catalog import FILE) "
                                 "and restart the server")
    return tuple(items)


@dataclass(frozen=True)
class Effects:
    """Relative true effects on treatment visitors: dwell per view and inquiry probability."""

    dwell: float = 0.0
    inquiry: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Effects:
        """``"dwell=+8%,inquiry=+15%"`` → Effects(0.08, 0.15)."""
        if not text:
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            m = re.fullmatch(r"\s*(dwell|inquiry)\s*=\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*", part)
            if not m:
                raise ValueError(f"cannot read effect {part!r}: expected e.g. dwell=+8%,inquiry=+15%")
            values[m.group(1)] = float(m.group(2)) / (100.0 if m.group(3) else 1.0)
        return cls(**values)


@dataclass(frozen=True)
class Behaviour:
    """Baseline visitor behaviour (control)."""

    mean_page_views: float = 2.5
    dwell_median_ms: float = 40_000.0
    dwell_sigma: float = 0.8
    inquiry_prob: float = 0.05
    inquiry_value_median: float = 2_000.0
    retry_prob: float = 0.03  # a client re-sends a batch that had in fact arrived
    mobile_share: float = 0.55


@dataclass
class SimulationReport:
    visitors: int = 0
    in_experiment: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    retries: int = 0
    variants: Counter = field(default_factory=Counter)
    inquiries: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "visitors": self.visitors, "in_experiment": self.in_experiment, "events_sent": self.events_sent,
            "accepted": self.accepted, "duplicates": self.duplicates, "retries": self.retries,
            "variants": dict(self.variants), "inquiries": dict(self.inquiries),
        }


class Simulator:
    def __init__(
        self,
        api: str,
        client_key: str,
        experiment: str,
        *,
        effects: Effects = Effects(),
        behaviour: Behaviour = Behaviour(),
        seed: int = 0,
        days: int = 0,
        control: str = "control",
        items: Sequence[tuple[str, str]],
        concurrency: int = 16,
    ) -> None:
        self.api = api.rstrip("/")
        self.headers = {"Authorization": f"Bearer {client_key}"}
        self.experiment = experiment
        self.effects = effects
        self.behaviour = behaviour
        self.seed = seed
        self.days = days
        self.control = control
        if not items:
            raise ValueError("the simulator needs catalog items (id, category) to visit")
        self.items = tuple(items)
        self.concurrency = concurrency
        self.report = SimulationReport()
        self.now = datetime.now(UTC)

    async def run(self, visitors: int, progress=None) -> SimulationReport:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(visitors):
            queue.put_nowait(i)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.api, headers=self.headers, limits=limits, timeout=30.0) as client:

            async def worker() -> None:
                while True:
                    try:
                        i = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await self.visit(client, i)
                    if progress is not None:
                        progress(1)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return self.report

    async def _request(self, client: httpx.AsyncClient, method: str, url: str, **kw) -> httpx.Response:
        """Retry connection errors and 503s with backoff; other errors are the caller's to see."""
        for attempt in range(8):
            try:
                r = await client.request(method, url, **kw)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code != 503:
                r.raise_for_status()
                return r
            self.report.retries += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        raise RuntimeError(f"{method} {url} kept failing")

    async def visit(self, client: httpx.AsyncClient, index: int) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        b = self.behaviour
        user_id = f"sim-{self.seed}-{index}"
        device = "mobile" if rng.random() < b.mobile_share else "desktop"
        first_item, category = rng.choice(self.items)
        r = await self._request(client, "GET", f"/v1/experiments/{self.experiment}/assignment",
                                params={"user_id": user_id, "item_id": first_item})
        body = r.json()
        self.report.visitors += 1
        if not body["in_experiment"]:
            return
        variant = body["variant"]
        self.report.in_experiment += 1
        self.report.variants[variant] += 1
        treated = variant != self.control
        # Visitors arrive uniformly over the simulated days; their events follow in seconds.
        start = self.now - timedelta(days=self.days * rng.random()) if self.days else self.now
        clock = start
        events: list[dict] = []

        def add(kind: str, item: str, cat: str, value: float | None = None) -> None:
            events.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "experiment": self.experiment, "variant": variant, "user_id": user_id, "item_id": item,
                "type": kind, "value": value, "ts": clock,
                "properties": {"device": device, "category": cat},
            })

        if self.days:
            add("exposure", first_item, category)  # the client-side exposure at the simulated time
        views = 1 + _poisson(rng, b.mean_page_views - 1)
        dwell_median = b.dwell_median_ms * (1 + self.effects.dwell if treated else 1)
        item, cat = first_item, category
        for view in range(views):
            if view:
                item, cat = rng.choice(self.items)
            add("page_view", item, cat)
            dwell = min(rng.lognormvariate(math.log(dwell_median), b.dwell_sigma), 3_600_000.0)
            clock += timedelta(milliseconds=dwell)
            add("dwell", item, cat, round(dwell, 1))
        p = min(b.inquiry_prob * (1 + self.effects.inquiry if treated else 1), 1.0)
        if rng.random() < p:
            add("inquiry", item, cat, round(rng.lognormvariate(math.log(b.inquiry_value_median), 0.5), 2))
            self.report.inquiries[variant] += 1
        # A simulated past must lie in the past: a session drawn at the very end of the window is
        # moved back so that it ends by now (else a report made now and one made later disagree).
        shift = clock - self.now if self.days and clock > self.now else timedelta(0)
        for event in events:
            event["ts"] = (event["ts"] - shift).isoformat()
        await self._send(client, rng, events)

    async def _send(self, client: httpx.AsyncClient, rng: random.Random, events: list[dict]) -> None:
        r = await self._request(client, "POST", "/v1/events", json={"events": events})
        body = r.json()
        self.report.events_sent += len(events)
        self.report.accepted += body["accepted"]
        self.report.duplicates += body["duplicates"]
        if rng.random() < self.behaviour.retry_prob:  # the answer "got lost": the same batch again
            again = (await self._request(client, "POST", "/v1/events", json={"events": events})).json()
            self.report.retries += 1
            self.report.accepted += again["accepted"]
            self.report.duplicates += again["duplicates"]


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k

"""`armor-ab simulate`: realistic visitors with a known true effect, through the real HTTP API."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from armor_ab.cli._common import fail
from armor_ab.config import API_ENV, CLIENT_KEY_ENV, DEFAULT_API, KEY_ENV


def simulate_command(
    experiment: Annotated[str, typer.Option("--experiment", help="experiment key")],
    visitors: Annotated[int, typer.Option("--visitors", min=1, help="how many visitors")] = 1000,
    effect: Annotated[str, typer.Option("--effect", help="true relative effects, e.g. dwell=+8%,inquiry=+15%")] = "",
    seed: Annotated[int, typer.Option("--seed", help="random seed (visitor ids depend on it)")] = 0,
    days: Annotated[int, typer.Option("--days", min=0, help="spread visits over this many past days")] = 0,
    api: Annotated[str, typer.Option("--api", envvar=API_ENV, help="API base URL")] = DEFAULT_API,
    key: Annotated[str | None, typer.Option("--key", envvar=CLIENT_KEY_ENV, help="client-scope key",
                                            show_envvar=True)] = None,
    read_key: Annotated[str | None, typer.Option(
        "--read-key", envvar=KEY_ENV, show_envvar=True,
        help="read-scope key: the catalog's items are listed through GET /v1/catalog/items")] = None,
    control: Annotated[str, typer.Option("--control", help="the variant that gets no effect")] = "control",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 16,
) -> None:
    """Drive simulated visitors over the server's catalog through the API; prints a JSON summary."""
    import httpx
    from tqdm import tqdm

    from armor_ab.devtools.simulate import CatalogUnavailable, Effects, Simulator, fetch_catalog

    if not key:
        fail("a client key is needed: --key or ARMOR_AB_CLIENT_KEY (create one with `armor-ab keys create --scope client`)")
    if not read_key:
        # A client key cannot list the catalog (a web page knows its own item): a read key can.
        fail(f"a read key is needed to list the catalog's items: --read-key or {KEY_ENV} "
             "(create one with `armor-ab keys create --scope read`)")
    try:
        effects = Effects.parse(effect)
    except ValueError as exc:
        fail(f"--effect: {exc}")
    try:
        items = fetch_catalog(api, read_key)
    except CatalogUnavailable as exc:
        fail(f"{api}: {exc}")
    except httpx.HTTPError as exc:
        fail(f"listing the catalog at {api} failed: {exc}")
    sim = Simulator(api, key, experiment, effects=effects, seed=seed, days=days, control=control,
                    concurrency=concurrency, items=items)
    with tqdm(total=visitors, desc="visitors", unit="visitor", disable=None) as bar:
        try:
            report = asyncio.run(sim.run(visitors, progress=bar.update))
        except Exception as exc:  # connection refused, 4xx: say what and where, no traceback
            fail(f"simulation against {api} failed: {exc}")
    typer.echo(json.dumps({"experiment": experiment, "effects": effects.__dict__, **report.as_dict()}))


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)

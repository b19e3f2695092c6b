"""`armor-ab roi prior`: the ROI's shrinkage prior estimated from the database's own past experiments."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, open_db

group = typer.Typer(help="ROI helpers.", no_args_is_help=True)


@group.command("prior")
def prior(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="the estimate and the experiments behind it as JSON")] = False,
) -> None:
    """Estimate the prior sd of the relative inquiry lift from every stopped experiment with a roi block.

    The default prior (sd 0.1) stays in force until you set the printed value as
    ``analysis.roi_prior_sd`` of an experiment; with fewer than 3 usable experiments the default is kept.
    """
    from armor_ab.reporting.report import past_roi_effects
    from armor_ab.roi.shrinkage import prior_from_history
    from armor_ab.store.experiments import list_experiments

    with open_db(db, read_only=True) as con:
        effects = past_roi_effects(con, list_experiments(con))
    estimate = prior_from_history((e["lift_rel"], e["se_rel"]) for e in effects)
    result = {**estimate.to_dict(), "experiments": effects}
    if as_json:
        typer.echo(json.dumps(result, indent=2, allow_nan=False))
        return
    for e in effects:
        typer.echo(f"{e['experiment']} ({e['variant']}): lift {e['lift_rel']:+.1%} (se {e['se_rel']:.1%})")
    if estimate.source == "history":
        typer.echo(f"prior sd of the relative lift: {estimate.sd_rel:.3f} from {len(effects)} past experiments; "
                   f"set `analysis: {{roi_prior_sd: {estimate.sd_rel:.3f}}}` to use it")
    else:
        typer.echo(f"keeping the default prior sd {estimate.sd_rel:.3f}: {estimate.source}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="roi")

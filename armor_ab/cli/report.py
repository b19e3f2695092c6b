"""`armor-ab report KEY` (the experiment report) and `armor-ab power` (sample size and duration).

`armor-ab analyze KEY` is the same command. Both take `--warehouse`: the statistics then run where the
events are (a DuckDB file, chDB or a ClickHouse server, Spark local, a cluster or Spark Connect; or a
warehouse file mapping the operator's own tables: docs/scale.md), and the experiment's definition still
comes from the store (`--db`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import duckdb
import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.logs import first_line
from armor_ab.store.experiments import ExperimentRecord, get_experiment


def _load_record(con: duckdb.DuckDBPyConnection, key: str, db: Path | None) -> ExperimentRecord:
    try:
        record = get_experiment(con, key)
    except duckdb.Error as exc:  # e.g. a file that is not an armor-ab database
        fail(f"cannot read experiments from {db or 'the default database'}: {exc}")
    if record is None:
        fail(f"no experiment {key!r} in {db or 'the default database'} (armor-ab experiment list shows them)")
    return record


def _num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f}%"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _p(p: float | None) -> str:
    return "-" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _print_report(report: dict) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    # A pipe or a file gets the whole table rather than rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    level = f"{(1 - report['alpha']) * 100:g}%"
    console.print(f"[bold]{report['experiment']}[/bold] — {report['name']} ({report['status']})")
    window = report["window"]
    console.print(f"window {window['start'] or '(open)'} → {window['end']}; control: {report['control']}")
    visitors = ", ".join(f"{k} {v:,}" for k, v in report["visitors"].items())
    srm = report["srm"]
    srm_txt = "[red]MISMATCH[/red]" if srm["flag"] else "ok"
    console.print(f"visitors: {visitors}; sample ratio {srm_txt} (p = {_p(srm['p_value'])})")
    for check in (report.get("data_quality") or {}).get("checks") or []:
        if check["status"] != "ok":
            colour = "red" if check["status"] == "fail" else "yellow"
            console.print(f"[{colour}]{check['name']}: {check['message']}[/{colour}]")

    table = Table(title=f"Results ({level} intervals; p adjusted: {report['correction']})")
    for col in ("metric", "variant", "control", "variant mean", "lift", "CI", "p", "p adj", "sequential CI",
                "P(win)", "CUPED", "status"):
        left = col in ("metric", "variant", "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=not left)
    for r in report["results"]:
        metric = r["metric"] + (" (guardrail)" if "guardrail" in r else "")
        status = r["status"]
        if "guardrail" in r:
            margin = f"{r['guardrail']['margin'] * 100:g}%"
            status += f"; guardrail {r['guardrail']['state']} (tolerance -{margin})"
        bayes = r["bayesian"] or {}
        win = bayes.get("chance_to_win")
        table.add_row(
            metric, r["variant"], _num(r["baseline_mean"]), _num(r["mean"]), _pct(r["lift_rel"]), _ci(r["ci_rel"]),
            _p(r["p_value"]), _p(r["p_value_adjusted"]), _ci(r["sequential"]["ci_rel"]),
            "-" if win is None else f"{win * 100:.1f}%", "yes" if r["cuped"] else "no", status,
        )
    console.print(table)

    power = report["power"]
    if power.get("total_visitors") is not None:
        days = "" if power.get("days_remaining") is None else (
            f"; about {power['days_remaining']:.1f} days left at {power['visitors_per_day']:,.0f} visitors/day")
        console.print(
            f"plan ({power['mode']} analysis, {power['method']} test): {power['total_visitors']:,} visitors for a "
            f"{power['mde'] * 100:g}% lift at {power['power'] * 100:g}% power{days}"
        )
    else:
        console.print(f"plan: not computable yet ({power['status']})")
    roi = report.get("roi")
    if roi and roi.get("status") == "ok":
        npv = roi["npv"]
        console.print(
            f"ROI ({roi['variant']}): expected NPV {_num(npv['expected'])} over {roi.get('horizon_months')} months "
            f"(95% interval {_num(npv['ci'][0])} to {_num(npv['ci'][1])}), P(NPV > 0) = "
            f"{roi['prob_npv_positive'] * 100:.0f}%, expected loss {_num(roi['expected_loss'])}"
        )
    elif roi:
        console.print(f"ROI: {roi.get('status')} ({roi.get('reason', '')})")
    verdict = report.get("verdict")
    if verdict and "decision" in verdict:
        console.print(f"[bold]{verdict['headline']}[/bold]")
        for reason in verdict["reasons"]:
            console.print(f"  • {reason}")


def _warehouse_report(setting: str, record: ExperimentRecord, cuped: bool | None) -> dict:
    """The report computed where ``setting`` (a URL or a warehouse file) says the events are."""
    from armor_ab.reporting.report import experiment_report
    from armor_ab.store.event_source import WarehouseFileError
    from armor_ab.store.warehouse import open_warehouse_setting, redact

    where = redact(setting)
    try:
        wh = open_warehouse_setting(setting)
    except WarehouseFileError as exc:
        fail(str(exc))
    except ImportError as exc:
        fail(f"--warehouse {where}: the engine's client is not installed ({exc.name or exc}); "
             "pip install 'armor-ab[warehouse]'")
    except ValueError as exc:
        fail(f"--warehouse {where}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the engine's own error (no such file, cannot connect), named
        fail(f"--warehouse {where}: cannot open it: {type(exc).__name__}: {first_line(exc, 500)}")
    try:
        return experiment_report(wh, record, cuped=cuped)
    except Exception as exc:  # noqa: BLE001 - a missing table or column is the user's to fix: say which
        fail(f"--warehouse {where}: the analysis failed there: {type(exc).__name__}: {first_line(exc, 500)}")
    finally:
        wh.close()



KeyArg = Annotated[str, typer.Argument(help="experiment key")]
WarehouseOpt = Annotated[
    str | None,
    typer.Option("--warehouse", help="run the statistics where the events are: a URL (duckdb:///path, chdb:, "
                                     "clickhouse://user:pass@host:8123/db, spark://local[N], sc://host:port; "
                                     "?parquet=DIR reads an event lake) or a warehouse file (.yaml) mapping your "
                                     "own tables (docs/scale.md); default: the store's event log"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="the full report as JSON")]
CupedOpt = Annotated[bool | None, typer.Option("--cuped/--no-cuped", help="override the experiment's CUPED setting")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""

    def _report(key: str, db: Path | None, as_json: bool, cuped: bool | None, warehouse: str | None) -> None:
        from armor_ab.reporting.report import experiment_report

        with open_db(db, read_only=True) as con:
            record = _load_record(con, key, db)
            if warehouse is None:
                report = experiment_report(con, record, cuped=cuped)
        if warehouse is not None:
            report = _warehouse_report(warehouse, record, cuped)
        if as_json:
            typer.echo(json.dumps(report, indent=2, allow_nan=False))
        else:
            _print_report(report)

    @app.command("report")
    def report(key: KeyArg, db: DbOption = None, as_json: JsonOpt = False, cuped: CupedOpt = None,
               warehouse: WarehouseOpt = None) -> None:
        """The report of an experiment: lifts, intervals, sequential and Bayesian results, SRM, power, ROI, verdict."""
        _report(key, db, as_json, cuped, warehouse)

    @app.command("analyze")
    def analyze(key: KeyArg, db: DbOption = None, as_json: JsonOpt = False, cuped: CupedOpt = None,
                warehouse: WarehouseOpt = None) -> None:
        """The same as `armor-ab report`: analyse an experiment, in the store or where the events are (--warehouse)."""
        _report(key, db, as_json, cuped, warehouse)

    @app.command("power")
    def power(
        baseline_mean: Annotated[float | None, typer.Option("--baseline-mean", help="control mean of the metric")] = None,
        baseline_sd: Annotated[float | None, typer.Option("--baseline-sd", help="per-visitor standard deviation")] = None,
        mde: Annotated[float | None, typer.Option("--mde", help="relative minimum detectable effect, 0.05 = 5%")] = None,
        alpha: Annotated[float | None, typer.Option("--alpha", help="two-sided significance level (default 0.05)")] = None,
        power_: Annotated[float | None, typer.Option("--power", help="target power (default 0.8)")] = None,
        visitors_per_day: Annotated[
            float | None, typer.Option("--visitors-per-day", help="traffic in the experiment, all variants")
        ] = None,
        variants: Annotated[int | None, typer.Option("--variants", help="number of variants incl. control")] = None,
        experiment: Annotated[
            str | None, typer.Option("--experiment", help="take baseline, MDE, alpha, power and traffic from it")
        ] = None,
        mode: Annotated[
            str | None, typer.Option("--mode", help="sequential | fixed | hybrid: the test to plan for "
                                                    "(default: the experiment's, else sequential)")
        ] = None,
        db: DbOption = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Visitors per variant and days needed to detect a relative lift of --mde with the test the verdict runs."""
        from armor_ab.reporting.report import primary_baseline
        from armor_ab.stats.power import alphas, plan_for_mode

        source: dict = {}
        if experiment is not None:
            with open_db(db, read_only=True) as con:
                record = _load_record(con, experiment, db)
                base = primary_baseline(con, record)
            spec = record.spec
            if base["status"] != "ok":
                fail(f"experiment {experiment!r} has no usable baseline for {base['metric']} yet ({base['status']}); "
                     "pass --baseline-mean and --baseline-sd")
            baseline_mean = base["baseline_mean"] if baseline_mean is None else baseline_mean
            baseline_sd = base["baseline_sd"] if baseline_sd is None else baseline_sd
            mde = spec.mde if mde is None else mde
            alpha = spec.alpha if alpha is None else alpha
            power_ = spec.analysis.power if power_ is None else power_
            variants = len(spec.variants) if variants is None else variants
            mode = spec.analysis.mode if mode is None else mode
            if visitors_per_day is None:
                visitors_per_day = base["visitors_per_day"]
            source = {"experiment": experiment, "metric": base["metric"], "observed_visitors": base["visitors"]}
        if baseline_mean is None or baseline_sd is None:
            fail("give --baseline-mean and --baseline-sd, or --experiment KEY to take them from the data")
        mode = mode or "sequential"
        n_variants = 2 if variants is None else variants
        try:
            if n_variants < 2:
                raise ValueError(f"variants must be an integer >= 2, got {n_variants!r}")
            a_seq, a_fix = alphas(mode, 0.05 if alpha is None else alpha, n_variants - 1, 0.5)
            share = 1.0 / n_variants
            plan = plan_for_mode(
                mode, baseline_mean, baseline_sd, 0.05 if mde is None else mde, alpha_sequential=a_seq,
                alpha_fixed=a_fix, power=0.8 if power_ is None else power_, control_share=share,
                treatment_share=share, visitors_per_day=visitors_per_day,
            )
        except ValueError as exc:
            fail(str(exc))
        result = {
            **source,
            "baseline_mean": baseline_mean,
            "baseline_sd": baseline_sd,
            "mde": 0.05 if mde is None else mde,
            "alpha": 0.05 if alpha is None else alpha,
            "power": 0.8 if power_ is None else power_,
            "variants": n_variants,
            "mode": mode,
            "visitors_per_day": visitors_per_day,
            **plan.to_dict(),
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2, allow_nan=False))
            return
        if plan.status.value != "ok":
            fail(f"cannot size the test: {plan.status.value}")
        typer.echo(
            f"{plan.n_per_variant:,} visitors per variant, {plan.total_visitors:,} in total "
            f"(relative MDE {result['mde'] * 100:g}%, alpha {result['alpha']:g}, power {result['power']:g})"
        )
        if plan.days is not None:
            typer.echo(f"about {plan.days:.1f} days at {visitors_per_day:,.0f} visitors per day")

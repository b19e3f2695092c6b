"""`armor-ab assign`: which variant a visitor (or a file of visitors) gets in an experiment file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import fail
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.loader import ExperimentFileError, load_experiment_file

_LINES_PER_WRITE = 10_000  # one write per chunk: a million visitors are a million lines


def _record(user_id: str, variant: str | None, hash_: float) -> str:
    return json.dumps({"user_id": user_id, "variant": variant, "in_experiment": variant is not None, "hash": hash_})


def _read_user_ids(path: Path) -> list[str]:
    """One id a line; blank lines are skipped and a Windows line ending is not part of the id."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read file: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    # split("\n"), not splitlines(): an id may hold characters splitlines() breaks on (\x1c, \u2028).
    return [line.removesuffix("\r") for line in text.split("\n") if line.removesuffix("\r")]


def assign_command(
    experiment_file: Annotated[Path, typer.Option("--experiment-file", help="Experiment YAML file")],
    user_id: Annotated[str | None, typer.Option("--user-id", help="One visitor: prints one JSON object")] = None,
    users_file: Annotated[
        Path | None, typer.Option("--users-file", help="A file of visitor ids, one a line: prints JSON lines")
    ] = None,
) -> None:
    """Assign visitors to variants exactly as the GrowthBook SDKs would (hash version and seed from the file)."""
    if (user_id is None) == (users_file is None):
        fail("give exactly one of --user-id or --users-file")
    try:
        spec = load_experiment_file(experiment_file)
    except ExperimentFileError as exc:
        fail(str(exc))
    assigner = Assigner.from_experiment(spec)
    if user_id is not None:
        a = assigner.assign(user_id)
        typer.echo(_record(a.user_id, a.variant, a.hash))
        return
    assert users_file is not None
    ids = _read_user_ids(users_file)
    index, hashes = assigner.assign_many(ids)
    keys = assigner.variants
    lines: list[str] = []
    for uid, i, h in zip(ids, index.tolist(), hashes.tolist(), strict=True):
        lines.append(_record(uid, keys[i] if i >= 0 else None, h))
        if len(lines) == _LINES_PER_WRITE:
            typer.echo("\n".join(lines))
            lines.clear()
    if lines:
        typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("assign")(assign_command)

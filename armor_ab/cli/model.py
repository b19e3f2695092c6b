"""`armor-ab model init`: turn your InternVL checkpoint and a Chameleon VQGAN into an ARMOR model directory.

    armor-ab model init --base InternVL2_5-1B-hf --vqgan chameleon/tokenizer --out armor-mine

``--base`` is a transformers-format InternVL checkpoint (``InternVLForConditionalGeneration``; docs/models.md
shows the conversion of OpenGVLab's original checkpoints). ``--vqgan`` is Chameleon's ``vqgan.ckpt`` or the
directory holding it with ``vqgan.yaml``. The result loads with ``armor-ab generate --model armor-mine`` and
``armor-ab engine build --model armor-mine``. Exit codes: 0 written, 2 bad input (nothing is written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

model_app = typer.Typer(help="Make ARMOR models from checkpoints you have.", no_args_is_help=True)


@model_app.command("init")
def init(
    base: Annotated[Path, typer.Option("--base", help="InternVL checkpoint directory (transformers format)")],
    vqgan: Annotated[Path, typer.Option("--vqgan", help="Chameleon vqgan.ckpt, or its directory with vqgan.yaml")],
    out: Annotated[Path, typer.Option("--out", help="New ARMOR model directory (must not exist)")],
    adapter_layers: Annotated[
        int, typer.Option("--adapter-layers", help="Transformer blocks between the LM and the visual head")
    ] = 3,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name recorded in generated content (default: OUT's name)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the adapter's and visual head's init")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Copy the base's weights as they are, add ARMOR's new parts, extend the tokenizer, write config."""
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    from armor_ab.logs import setup_logging
    from armor_ab.model.from_base import ModelInitError, init_from_base
    from armor_ab.model.vqgan import VQGANFileError

    setup_logging(log_level.upper())
    if not base.is_dir():
        fail(f"--base {base}: not a directory")
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger("armor_ab")]):
            report = init_from_base(base, vqgan, out, adapter_layers=adapter_layers, name=name, seed=seed,
                                    progress=True)
    except (ModelInitError, VQGANFileError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    new = sum(report.new_parameters.values())
    typer.echo(f"wrote {report.out}: {report.language_model} base ({report.base_tensors} tensors, "
               f"{report.base_bytes / 2**20:.1f} MiB, copied as they are) + {new:,} new parameters, {report.dtype}")
    tok = report.tokenizer
    typer.echo(f"tokenizer: {tok['text_vocab_size']} text ids + ARMOR's image tokens; chat template: "
               f"{tok['chat_template']}" + (f"; added {', '.join(tok['added_internvl'])}" if tok["added_internvl"] else ""))
    if report.tied_lm_head_copied:
        typer.echo("the base ties its output head to the input embedding: ARMOR keeps a copy of its own")
    if report.vqgan["random_init_encoder_tensors"]:
        typer.echo(f"warning: the VQGAN checkpoint has no encoder ({report.vqgan['random_init_encoder_tensors']} "
                   "tensors left at init): generation works, encoding training pictures does not", err=True)
    typer.echo(f"{report.seconds} s, peak memory {report.peak_rss_above_baseline_bytes / 2**20:.0f} MiB above "
               f"the process's start. Next: armor-ab generate --model {report.out} --prompt ...")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.add_typer(model_app, name="model")

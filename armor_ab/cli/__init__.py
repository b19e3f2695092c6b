"""The ``armor-ab`` command line (Typer). Each command group lives in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="armor-ab",
    help="armor-ab: A/B tests of ARMOR-generated interleaved catalog content, from engine to ROI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module defines register(app); imported here so `armor-ab --help` lists everything.
_MODULES = (
    "experiment",  # experiment apply|start|stop|list|show
    "assign",  # assign --experiment-file --user-id/--users-file
    "keys",  # keys create|list|revoke
    "events",  # events import|export
    "catalog",  # catalog import|list|show
    "serve",  # serve
    "simulate",  # simulate
    "report",  # report (and its deprecated alias analyze), power
    "roi",  # roi prior
    "model",  # model init (ARMOR from your InternVL checkpoint)
    "generate",  # generate (ARMOR model)
    "engine",  # engine build (ONNX / TensorRT)
    "content",  # content generate|approve|list
    "train",  # train (WoHG stages)
    "eval",  # eval (demo model figures)
    "dashboard",  # dashboard (Streamlit, over the API)
)
for _name in _MODULES:
    importlib.import_module(f"armor_ab.cli.{_name}").register(app)

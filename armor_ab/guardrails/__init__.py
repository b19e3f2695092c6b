"""Guardrails: checks every generated page passes before it can be approved or served.

One module per check (``spec_fidelity``, ``terms``, ``modality``, ``image_sanity``, ``image_text``,
``text_hygiene``), one registry (``registry.CHECKS``), one pipeline (``pipeline.check_pages``) that
content generation (batch and on-demand) and ``armor-ab content check`` run. The experiment's
``content_checks:`` policy (``armor_ab.experiments.content_checks``) says which checks block and
which warn. docs/guardrails.md.
"""

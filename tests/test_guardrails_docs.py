"""docs/guardrails.md and the code agree: every check, every policy field, and the YAML examples validate."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from armor_ab.experiments.content_checks import ContentChecks, HealthSpec
from armor_ab.guardrails.registry import CHECKS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "guardrails.md").read_text()


def _yaml_blocks() -> list[dict]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC, re.S)]


def test_every_check_is_documented_in_the_table() -> None:
    table = {m for m in re.findall(r"^\| `(\w+)` \|", DOC, re.M)}
    assert table == set(CHECKS)


def test_the_yaml_examples_are_valid_policies_naming_every_field() -> None:
    blocks = _yaml_blocks()
    checks = next(b["content_checks"] for b in blocks if "content_checks" in b)
    health = next(b["health"] for b in blocks if "health" in b)
    policy = ContentChecks.model_validate(checks)
    HealthSpec.model_validate(health)
    assert set(checks) == set(ContentChecks.model_fields)
    assert set(health) == set(HealthSpec.model_fields)
    for name in CHECKS:  # each check's example names every field of its policy
        assert set(checks[name]) == set(type(getattr(policy, name)).model_fields), name

"""The docs and the code agree."""

from __future__ import annotations

import re
from pathlib import Path

from armor_ab.store.schema import EVENT_COLUMNS, EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1]


def test_events_doc_lists_exactly_the_schema_columns() -> None:
    text = (ROOT / "docs" / "events.md").read_text()
    table = text.split("## Table `events`")[1].split("##")[0]
    documented = re.findall(r"^\| `(\w+)` \| (\w+) \|", table, flags=re.M)
    assert documented == [(name, typ) for name, typ in EVENT_COLUMNS]
    for kind in EVENT_TYPES:
        assert f"`{kind}`" in table


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_ci_calls_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_benchmark_is_recorded_in_the_docs() -> None:
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    for bench in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert f"benchmarks/{bench.name}" in doc, f"{bench.name} has no figures in docs/benchmarks.md"


def test_statistics_doc_settings_validate_and_name_every_check() -> None:
    """docs/statistics.md and the code agree: its YAML is a valid analysis block, its check table
    names exactly the checks the report carries."""
    import re

    import yaml

    from armor_ab.experiments.models import AnalysisSpec
    from armor_ab.stats.quality import quality_checks

    doc = (ROOT / "docs" / "statistics.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    AnalysisSpec.model_validate(yaml.safe_load(block)["analysis"])
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, re.M))
    checks = quality_checks(srm={"flag": False, "p_value": 1.0}, included_visitors=0, unknown={}, multi=0, bots={},
                            caps={}, multi_warn_share=0.01, days_elapsed=0.0, min_runtime_days=7.0,
                            visitors_per_variant={"a": 0}, min_visitors_per_variant=100)
    assert documented >= {c.name for c in checks}
    assert {c.name for c in checks} >= documented - {"sequential", "fixed", "hybrid"}

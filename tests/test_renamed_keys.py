"""Renamed experiment keys: an old name is read as the new one, with a warning and a log line naming
the file and the field, wherever a spec comes from (YAML file, API body, a spec stored by older code);
both names at once is an error naming both; unknown keys are still refused."""

from __future__ import annotations

import logging
import typing
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from armor_ab.experiments import models
from armor_ab.experiments.loader import ExperimentFileError, load_experiment_file
from armor_ab.experiments.models import ExperimentCreate, ExperimentSpec, apply_renamed_keys
from armor_ab.store.db import connect
from armor_ab.store.experiments import get_experiment

YAML = """\
key: renamed-keys
name: Renamed keys
owner_name: pm@example.com
variants:
  - {key: control, weight: 0.5}
  - {key: armor, weight: 0.5, content: {source: armor, prompt: "Describe {name}.", images: 3}}
metrics: {primary: dwell_time_per_view}
analysis: {mode: fixed, min_days: 3}
"""

FAKE = {
    ("analysis", "min_days"): "min_runtime_days",
    ("variants", "*", "content", "images"): "max_images",
    ("owner_name",): "owner",
}


@pytest.fixture
def fake_renames(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(models, "RENAMED_KEYS", dict(FAKE))
    return FAKE


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


def test_old_keys_in_a_file_load_warn_and_log(tmp_path: Path, fake_renames: dict,
                                              caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "old.yaml"
    f.write_text(YAML)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "armor_ab.experiments"):
        warnings.simplefilter("always")
        spec = load_experiment_file(f)
    assert spec.analysis.min_runtime_days == 3 and spec.analysis.mode == "fixed"
    assert spec.variants[1].content.max_images == 3
    assert spec.owner == "pm@example.com"
    messages = deprecations(caught)
    assert len(messages) == 3  # once each: the loader renames, the model then sees only new names
    assert any(str(f) in m and "'analysis.min_days'" in m and "'analysis.min_runtime_days'" in m for m in messages)
    assert any("'variants[1].content.images'" in m and "'variants[1].content.max_images'" in m for m in messages)
    logged = [r.getMessage() for r in caplog.records if r.name == "armor_ab.experiments"]
    assert len(logged) == 3 and all(str(f) in m for m in logged)
    assert any("analysis.min_runtime_days" in m for m in logged)


def test_old_keys_warn_with_the_python_warning_machinery(fake_renames: dict) -> None:
    import yaml

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ExperimentSpec.model_validate(yaml.safe_load(YAML))
    messages = deprecations(caught)
    assert len(messages) == 3 and all(m.startswith("experiment 'renamed-keys': field '") for m in messages)


def test_both_names_is_an_error_naming_both(tmp_path: Path, fake_renames: dict) -> None:
    f = tmp_path / "both.yaml"
    f.write_text(YAML.replace("min_days: 3", "min_days: 3, min_runtime_days: 4"))
    with pytest.raises(ExperimentFileError) as info:
        load_experiment_file(f)
    assert info.value.field == "analysis.min_runtime_days"
    assert "'analysis.min_days'" in str(info.value) and "'analysis.min_runtime_days'" in str(info.value)
    assert str(f) in str(info.value)

    import yaml

    with pytest.raises(ValidationError, match="analysis.min_days.*analysis.min_runtime_days"):
        ExperimentSpec.model_validate(yaml.safe_load(f.read_text()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unknown_keys_are_still_refused(tmp_path: Path, fake_renames: dict) -> None:
    f = tmp_path / "unknown.yaml"
    f.write_text(YAML.replace("min_days: 3", "min_dayz: 3"))
    with pytest.raises(ExperimentFileError) as info:
        load_experiment_file(f)
    assert info.value.field == "analysis.min_dayz" and "Extra inputs" in info.value.message


def test_the_api_body_gets_the_renames(fake_renames: dict) -> None:
    """The admin API validates its body with the same model (``ExperimentCreate``)."""
    import yaml

    body = yaml.safe_load(YAML)
    before = repr(body)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = ExperimentCreate.model_validate(body)
    assert any("experiment 'renamed-keys'" in m and "min_runtime_days" in m for m in deprecations(caught))
    assert spec.analysis.min_runtime_days == 3
    assert repr(body) == before  # the caller's mapping is not changed


def test_a_spec_stored_by_older_code_is_read_with_the_new_names(db_path: Path, fake_renames: dict) -> None:
    import json

    import yaml

    now = datetime.now(UTC)
    con = connect(db_path)
    try:
        con.execute("INSERT INTO experiments (key, name, status, spec, bucket_version, created_at, updated_at, started_at, stopped_at) VALUES ('renamed-keys', 'Renamed keys', 'draft', ?, 0, ?, ?, NULL, NULL)",
                    [json.dumps(yaml.safe_load(YAML)), now, now])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = get_experiment(con, "renamed-keys")
        assert any("'analysis.min_runtime_days'" in m for m in deprecations(caught))
        assert rec is not None and rec.spec.analysis.min_runtime_days == 3
        assert "min_runtime_days" in rec.spec.model_dump_json()  # saved back under the new name
    finally:
        con.close()


def test_without_renames_nothing_changes() -> None:
    data = {"key": "x", "analysis": {"min_days": 3}}
    assert apply_renamed_keys(data, renames={}) is data
    with pytest.raises(ValidationError, match="Extra inputs"):
        ExperimentSpec.model_validate({**data, "name": "x", "variants": [{"key": "a", "weight": 0.5},
                                                                          {"key": "b", "weight": 0.5}],
                                       "metrics": {"primary": "inquiry_rate"}})


def _model_at(path: tuple[str, ...]) -> type[BaseModel]:
    """The model class of the mapping at ``path`` in ``ExperimentSpec`` ("*": a list's items)."""

    def models_in(annotation: object) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    cls: type[BaseModel] = ExperimentSpec
    for part in path:
        if part == "*":
            continue
        annotation = cls.model_fields[part].annotation
        found = models_in(annotation)
        assert len(found) == 1, f"{path}: {part} is not one model"
        cls = found[0]
    return cls


@pytest.mark.parametrize("table", [FAKE, models.RENAMED_KEYS], ids=["fake", "declared"])
def test_every_rename_leads_from_a_non_field_to_a_field(table: dict) -> None:
    for (*where, old), new in table.items():
        cls = _model_at(tuple(where))
        assert new in cls.model_fields, f"{where}: {new!r} is not a field of {cls.__name__}"
        assert old not in cls.model_fields, f"{where}: {old!r} is still a field of {cls.__name__}"


def test_the_event_level_dwell_cap_is_not_renamed() -> None:
    assert "dwell_cap_percentile" in models.AnalysisSpec.model_fields
    assert not any("dwell_cap_percentile" in (*k, v) for k, v in models.RENAMED_KEYS.items())

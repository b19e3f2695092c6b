"""Reading experiment YAML files, with errors that name the file and the field at fault.

Keys renamed since a file was written (``RENAMED_KEYS`` in ``armor_ab.experiments.models``) are
read under their new name, with a ``DeprecationWarning`` and a log line naming the file and field.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from armor_ab.experiments.models import ExperimentSpec, RenamedKeyError, apply_renamed_keys


class ExperimentFileError(ValueError):
    """A YAML file that is not a valid experiment: ``str()`` names the file and the field."""

    def __init__(self, path: Path | str, field: str | None, message: str) -> None:
        self.path = str(path)
        self.field = field
        self.message = message
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: {message}")


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def spec_from_mapping(data: object, source: Path | str = "<input>") -> ExperimentSpec:
    """Validate a parsed mapping; raises ``ExperimentFileError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise ExperimentFileError(source, None, "expected a mapping of experiment fields at the top level")
    try:
        data = apply_renamed_keys(data, str(source))  # here, so that the warning names the file
    except RenamedKeyError as exc:
        raise ExperimentFileError(source, exc.field, str(exc)) from None
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(p for p in err["loc"] if p not in ("function-after",))) or None
        raise ExperimentFileError(source, field, err["msg"]) from None


def parse_experiment_yaml(text: str, source: Path | str = "<input>") -> ExperimentSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ExperimentFileError(source, None, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return spec_from_mapping(data, source)


def load_experiment_file(path: Path | str) -> ExperimentSpec:
    """Read and validate one experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentFileError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    return parse_experiment_yaml(text, path)

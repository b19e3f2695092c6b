"""Reading experiment specs (YAML files, JSON bodies), with errors that name the source and the field.

Keys renamed since a file was written (``RENAMED_KEYS`` in ``armor_ab.experiments.models``) are
read under their new name, with a ``DeprecationWarning`` and a log line naming the file and field.

Every parsed body passes ``limits.check_spec_body`` before the models see it (``docs/security.md``,
"Limits"): nesting, integer size, string lengths and non-finite numbers are refused naming the
field, and the parsers are set up so that none of these can raise out of them (a 500).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from armor_ab.experiments.limits import (
    JSON_HOOKS,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    Refused,
    SpecLimitError,
    check_json_depth,
    check_spec_body,
    field_path,
    too_deep,
    too_many_digits,
)
from armor_ab.experiments.models import ExperimentSpec, RenamedKeyError, apply_renamed_keys
from armor_ab.roi.assumptions import RANGEABLE


class ExperimentFileError(ValueError):
    """A spec (a YAML file, a JSON body) that is not a valid experiment: ``str()`` names the source and the field.

    ``code`` is the API's error code when it is not the default (``invalid_json``, ``invalid_yaml``,
    ``limit_exceeded``); None for a spec the models refuse.
    """

    def __init__(self, path: Path | str, field: str | None, message: str, code: str | None = None) -> None:
        self.path = str(path)
        self.field = field
        self.message = message
        self.code = code
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: {message}")


def error_field(loc: tuple | list) -> str | None:
    """The dotted field of a pydantic error's location, without the validators' and unions' own parts
    (``function-after``; the ``number``/``range`` tag of a ranged ROI assumption)."""
    parts = [p for i, p in enumerate(loc) if p != "function-after"
             and not (p in ("number", "range") and i and loc[i - 1] in RANGEABLE)]
    return field_path(tuple(parts))


def spec_from_mapping(data: object, source: Path | str = "<input>") -> ExperimentSpec:
    """Validate a parsed mapping; raises ``ExperimentFileError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise ExperimentFileError(source, None, "expected a mapping of experiment fields at the top level")
    try:
        check_spec_body(data)
    except SpecLimitError as exc:
        raise ExperimentFileError(source, exc.field, exc.message, exc.code) from None
    try:
        data = apply_renamed_keys(data, str(source))  # here, so that the warning names the file
    except RenamedKeyError as exc:
        raise ExperimentFileError(source, exc.field, str(exc)) from None
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ExperimentFileError(source, error_field(err["loc"]), err["msg"]) from None


class _SpecYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops at ``MAX_DEPTH`` while it composes (the composer recurses, so
    10,000 levels would raise ``RecursionError``) and does not convert over-long integers
    (``int()`` raises over 4,300 digits): ``check_spec_body`` refuses them naming the field."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list = []

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if parent is not None:
            self._path.append(index.value if isinstance(index, yaml.ScalarNode)
                              else index if isinstance(index, int) else "?")
        try:
            if len(self._path) >= MAX_DEPTH and self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
                raise too_deep(tuple(self._path))
            return super().compose_node(parent, index)
        finally:
            if parent is not None:
                self._path.pop()

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | Refused:
        text = self.construct_scalar(node)
        if too_many_digits(text):
            return Refused(f"an integer has at most {MAX_INT_DIGITS} digits")
        return super().construct_yaml_int(node)


_SpecYamlLoader.add_constructor("tag:yaml.org,2002:int", _SpecYamlLoader.construct_yaml_int)


def parse_experiment_yaml(text: str, source: Path | str = "<input>") -> ExperimentSpec:
    try:
        data = yaml.load(text, Loader=_SpecYamlLoader)  # a SafeLoader
    except SpecLimitError as exc:
        raise ExperimentFileError(source, exc.field, exc.message, exc.code) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ExperimentFileError(source, None, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}",
                                  "invalid_yaml") from None
    return spec_from_mapping(data, source)


def parse_experiment_json(raw: bytes | str, source: Path | str = "<input>") -> ExperimentSpec:
    """An experiment from JSON text; ``NaN``, ``Infinity``, huge integers and deep nesting are refused
    naming the field (``json.loads`` alone accepts the first two and raises on the others)."""
    try:
        text = raw.decode(json.detect_encoding(raw)) if isinstance(raw, bytes) else raw
        check_json_depth(text)
        data = json.loads(text, **JSON_HOOKS)
    except SpecLimitError as exc:
        raise ExperimentFileError(source, exc.field, exc.message, exc.code) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ExperimentFileError(source, None, f"not valid JSON: {exc}", "invalid_json") from None
    return spec_from_mapping(data, source)


def load_experiment_file(path: Path | str) -> ExperimentSpec:
    """Read and validate one experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentFileError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    return parse_experiment_yaml(text, path)

"""Validation on the way in (issue 15, findings 1, 2 and 5): what a spec may hold, refused with a 4xx naming the
field and nothing stored; and the limits table of docs/security.md is the one in the code."""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from armor_ab.experiments import limits
from armor_ab.experiments.limits import LIMITS
from armor_ab.experiments.loader import ExperimentFileError, parse_experiment_json, parse_experiment_yaml
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.services.state import ServerSettings
from tests.helpers.platform import Platform

ROOT = Path(__file__).resolve().parents[1]
JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}


def spec(**changes: object) -> dict:
    base = {"key": "limits", "name": "Limits", "metrics": {"primary": "inquiry_rate"},
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}
    return {**base, **changes}


def refused(response, status: int, code: str, field: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["field"] == field, body
    return body["error"]


def stored_keys(c) -> list[str]:
    return sorted(e["key"] for e in c.get("/v1/experiments").json())


# -- finding 1: non-finite numbers --------------------------------------------------------------------

NON_FINITE = [
    ("json", json.dumps(spec(mde=1)).replace('"mde": 1', '"mde": Infinity'), "mde"),
    ("json", json.dumps(spec(mde=1)).replace('"mde": 1', '"mde": NaN'), "mde"),
    ("json", json.dumps(spec(alpha=1)).replace('"alpha": 1', '"alpha": -Infinity'), "alpha"),
    ("json", json.dumps(spec(mde=1)).replace('"mde": 1', '"mde": 1e999'), "mde"),
    ("yaml", yaml.safe_dump(spec()) + "analysis: {prior_mean: .nan}\n", "analysis.prior_mean"),
    ("yaml", yaml.safe_dump(spec()) + "roi: {monthly_visitors: .inf}\n", "roi.monthly_visitors"),
    ("yaml", yaml.safe_dump(spec()) + "roi: {margin_per_order: {low: 1, likely: .nan, high: 3}}\n",
     "roi.margin_per_order.likely"),
]


@pytest.mark.parametrize(("kind", "body", "field"), NON_FINITE)
def test_non_finite_numbers_are_refused_and_nothing_is_stored(platform: Platform, kind, body, field) -> None:
    with platform.client("admin") as c:
        before = stored_keys(c)
        r = c.post("/v1/experiments", content=body, headers=JSON if kind == "json" else YAML)
        err = refused(r, 422, "validation_error", field)
        assert "finite" in err["message"]
        assert stored_keys(c) == before
        assert c.get("/v1/quarantine/experiments").json() == []
        assert c.post("/v1/keys", json={"scope": "read"}).status_code == 201  # the issue: 500 here


def _float_paths(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    """The path of every float field of ``model`` and the models in it (first item of a list)."""
    out = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        stack, floats, nested = [info.annotation], False, []
        while stack:
            t = stack.pop()
            if t is float:
                floats = True
            elif isinstance(t, type) and issubclass(t, BaseModel):
                nested.append((t, path))
            elif typing.get_origin(t) is list:
                (item,) = typing.get_args(t)
                if isinstance(item, type) and issubclass(item, BaseModel):
                    nested.append((item, (*path, 0)))
                else:
                    stack.append(item)
            elif typing.get_origin(t) in (typing.Union, types.UnionType, typing.Annotated):
                stack.extend(typing.get_args(t)[:1] if typing.get_origin(t) is typing.Annotated
                             else typing.get_args(t))
        if floats:
            out.append(path)
        for sub, at in nested:
            if sub.__name__ != "Range":  # a ranged ROI figure: covered through its plain number
                out.extend(_float_paths(sub, at))
    return out


FLOAT_PATHS = _float_paths(ExperimentSpec)


def test_every_float_field_is_found() -> None:
    found = {".".join(map(str, p)) for p in FLOAT_PATHS}
    assert {"mde", "alpha", "variants.0.weight", "analysis.prior_mean", "analysis.capping_default.value",
            "metrics.guardrails.0.margin", "roi.monthly_visitors", "roi.material_investment"} <= found


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("path", FLOAT_PATHS, ids=lambda p: ".".join(map(str, p)))
def test_every_float_field_refuses_non_finite_numbers(path: tuple, value: float) -> None:
    data = spec(metrics={"primary": "inquiry_rate", "guardrails": [{"metric": "inquiry_rate"}]}, roi={})
    node: typing.Any = data
    for part in path[:-1]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(data)
    assert tuple(info.value.errors()[0]["loc"][: len(path)]) == path


# -- finding 5: bodies that used to answer 500 ------------------------------------------------------------


def test_deep_nesting_huge_integers_and_long_strings_are_refused(platform: Platform) -> None:
    deep_json = '{"key": "x", "hypothesis": ' + "[" * 5000 + "]" * 5000 + "}"
    deep_yaml = "key: x\nhypothesis: " + "[" * 10_000 + "]" * 10_000 + "\n"
    huge = "1" * 5000
    with platform.client("admin") as c:
        before = stored_keys(c)
        err = refused(c.post("/v1/experiments", content=deep_json, headers=JSON), 422, "limit_exceeded",
                      "hypothesis" + "[0]" * (limits.MAX_DEPTH - 1))
        assert "16 levels" in err["message"]
        refused(c.post("/v1/experiments", content="[" * 5000 + "]" * 5000, headers=JSON), 422, "limit_exceeded",
                "[0]" * limits.MAX_DEPTH)
        refused(c.post("/v1/experiments", content=deep_yaml, headers=YAML), 422, "limit_exceeded",
                "hypothesis" + "[0]" * (limits.MAX_DEPTH - 1))
        body = json.dumps(spec(variants=[{"key": "a", "weight": 0.5, "content": {"source": "catalog", "seed": 7}},
                                         {"key": "b", "weight": 0.5}]))
        refused(c.post("/v1/experiments", content=body.replace('"seed": 7', f'"seed": {huge}'), headers=JSON),
                422, "limit_exceeded", "variants[0].content.seed")
        as_yaml = yaml.safe_dump(json.loads(body)).replace("seed: 7", f"seed: {huge}")
        refused(c.post("/v1/experiments", content=as_yaml, headers=YAML), 422, "limit_exceeded",
                "variants[0].content.seed")
        refused(c.post("/v1/experiments", content=body.replace('"seed": 7', '"seed": 1' + "0" * 18), headers=JSON),
                422, "limit_exceeded", "variants[0].content.seed")  # 19 digits
        refused(c.post("/v1/experiments", json=spec(hypothesis="h" * (limits.MAX_TEXT_CHARS + 1))), 422,
                "validation_error", "hypothesis")
        refused(c.post("/v1/experiments", json=spec(owner="o" * 201)), 422, "validation_error", "owner")
        refused(c.post("/v1/experiments", json=spec(hypothesis="h" * (limits.MAX_STRING_CHARS + 1))), 422,
                "limit_exceeded", "hypothesis")
        many = spec(metrics={"primary": "inquiry_rate", "secondary": ["inquiry_rate"] * limits.MAX_VALUES})
        refused(c.post("/v1/experiments", json=many), 422, "limit_exceeded", "metrics.secondary")
        assert stored_keys(c) == before


def test_an_alias_bomb_stops_at_the_value_limit() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    text = "\n".join(lines) + "\nkey: x\n"
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_yaml(text)
    assert info.value.code == "limit_exceeded"


def test_a_huge_integer_as_a_yaml_key_is_refused() -> None:
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_yaml("key: x\nanalysis:\n  " + "9" * 50 + ": 1\n")
    assert info.value.code == "limit_exceeded" and info.value.field == "analysis"
    with pytest.raises(ExperimentFileError) as info:  # YAML's own limit on a plain key (1,024 characters)
        parse_experiment_yaml("key: x\nanalysis:\n  " + "9" * 5000 + ": 1\n")
    assert info.value.code == "invalid_yaml"


def test_limits_keep_the_documented_spec_valid() -> None:
    from armor_ab import assets

    deep_enough = spec(roi={"monthly_visitors": {"low": 1, "likely": 2, "high": 3}},
                       analysis={"capping": {"inquiry_rate": {"type": "absolute", "value": 3}}})
    assert parse_experiment_json(json.dumps(deep_enough)).roi is not None
    parse_experiment_yaml(Path(assets.DEMO_EXPERIMENT).read_text())
    parse_experiment_json(json.dumps(spec(variants=[{"key": "a", "weight": 0.5, "content": {"source": "catalog",
                                                                                           "seed": 10**18 - 1}},
                                                  {"key": "b", "weight": 0.5}])))


# -- finding 2: segments ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("segments", "field"), [
    ([f"s{i}" for i in range(2000)], "segments"),  # the 2,000
    ([f"s{i}" for i in range(limits.MAX_SEGMENTS + 1)], "segments"),
    (["plan", "with space"], "segments[1]"),
    (["plan", "nul\x00"], "segments[1]"),
    (["", "plan"], "segments[0]"),
    (["x" * 65], "segments[0]"),
    (["plan\n"], "segments[0]"),
    (["plan", "plan"], "segments"),
])
def test_segments_are_bounded_at_creation(platform: Platform, segments: list[str], field: str) -> None:
    with platform.client("admin") as c:
        refused(c.post("/v1/experiments", json=spec(key="seg", segments=segments)), 422, "validation_error", field)
        refused(c.put("/v1/experiments/seg", json=spec(key="seg", segments=segments)), 422, "validation_error",
                field)
        assert "seg" not in stored_keys(c)


def test_eight_good_segments_are_accepted(platform: Platform) -> None:
    names = ["plan", "device.os", "Country-Code", "a_b", "x" * 64, "v2", "tier", "region"]
    with platform.client("admin") as c:
        r = c.post("/v1/experiments", json=spec(key="seg-ok", segments=names))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["segments"] == names


def test_variants_are_bounded() -> None:
    many = [{"key": f"v{i}", "weight": 1 / 21} for i in range(21)]
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_json(json.dumps(spec(variants=many)))
    assert info.value.field == "variants"


# -- the limits table -----------------------------------------------------------------------------------------

def test_the_limits_table_in_docs_security_is_the_one_in_the_code() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    section = doc.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|([^|]*)\|\s*$", section, flags=re.M)
    documented = {key: (limit.strip(), error.strip()) for key, _what, limit, error in rows}
    body = ServerSettings.__dataclass_fields__["max_body_bytes"].default
    expected = {**{k: (v.value, v.status, v.code) for k, v in LIMITS.items()},
                "request_body_bytes": (body, 413, "payload_too_large")}
    assert set(documented) == set(expected)
    for key, (limit, error) in documented.items():
        value, status, code = expected[key]
        if isinstance(value, int):
            assert int(limit.split()[0].replace(",", "")) == value, key
        else:
            assert limit.strip("`") == value, key
        assert error.startswith(f"{status} `{code}`"), key


# -- fuzzing: no spec body answers 5xx ---------------------------------------------------------------------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
_spec_like = st.fixed_dictionaries(
    {"key": st.sampled_from(["fuzz", "Fuzz", ""]) | _values, "name": st.text(max_size=5) | _values,
     "metrics": st.fixed_dictionaries({"primary": st.sampled_from(["inquiry_rate", "x"])}) | _values,
     "variants": st.just([{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]) | _values},
    optional={"mde": _values, "segments": st.lists(st.text(max_size=70), max_size=10) | _values,
              "analysis": st.dictionaries(st.sampled_from(["prior_mean", "capping", "mode", "junk"]), _values),
              "roi": st.dictionaries(st.sampled_from(["monthly_visitors", "horizon_months", "hourly_rate"]), _values)},
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_spec_like | _values, as_yaml=st.booleans())
def test_fuzz_spec_bodies_never_5xx(platform: Platform, body, as_yaml: bool) -> None:
    if as_yaml:
        content, headers = yaml.safe_dump(body), YAML
    else:
        content, headers = json.dumps(body), JSON  # NaN and Infinity included, as Python writes them
    r = httpx.post(f"{platform.url}/v1/experiments", content=content, headers={**headers, **platform.headers("admin")})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()) == {"error"} and {"code", "message", "field"} <= set(r.json()["error"])

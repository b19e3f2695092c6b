"""Deterministic assignment: bit-compatible with the GrowthBook SDK specification.

Expected values come from three independent places: literals published for the reference
(JavaScript) SDK's ``hashFnv32a`` and the specification's test cases, arithmetic written out by
hand here, and the installed GrowthBook Python SDK (``growthbook.core``) run on the same inputs.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import growthbook
import numpy as np
import pytest
from growthbook import core as gb
from scipy.stats import chisquare
from typer.testing import CliRunner

from armor_ab.assets import DEMO_EXPERIMENT
from armor_ab.experiments.assignment import (
    Assigner,
    Assignment,
    assign,
    assign_many,
    choose_variation,
    fnv1a32,
    gb_hash,
    get_bucket_ranges,
    in_range,
)
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.store.experiments import ExperimentRecord

P, OFFSET, M = 0x01000193, 0x811C9DC5, 0xFFFFFFFF
DEMO = str(DEMO_EXPERIMENT)


def random_ids(rng: random.Random, n: int) -> list[str]:
    """ASCII of every length around the 4-byte unrolling, UTF-16 edge cases, empties, NULs, long ids."""
    fixed = ["", "\x00", "a\x00", "\x00a", "é", "😀", "a😀b", "\ud800", "\udfff x", "x" * 256, "y" * 257, "z" * 1000]
    out = list(fixed)
    alphabet = "abcdef0123456789-_:.ABCXYZ "
    for _ in range(n):
        r = rng.random()
        length = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 35, 36, 37, 64, 255, 256, 300])
        if r < 0.5:
            out.append("".join(rng.choice(alphabet) for _ in range(length)))
        elif r < 0.8:  # one character from each UTF-16 region: ASCII, 2/3-byte BMP, astral, surrogates
            pools = [(32, 127), (128, 0x800), (0x800, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000), (0xD800, 0xE000)]
            out.append("".join(chr(rng.randrange(*rng.choice(pools))) for _ in range(length)))
        else:
            out.append("".join(chr(rng.randrange(0x110000)) for _ in range(length)))
    return out


@pytest.fixture(scope="module")
def ids() -> list[str]:
    return random_ids(random.Random(20240601), 3000)


def uuids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


# ---------------------------------------------------------------- FNV-1a and the hash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # published vectors of the JS SDK's hashFnv32a (ASCII, then UTF-16 code units above 0xFF)
        ("", 2166136261),
        ("a", 3826002220),
        ("b", 3876335077),
        ("hello", 1335831723),
        ("z", 4278997933),
        ("seeda", 717764279),
        ("717764279", 2503390505),
        ("Ā", 84593183),
        ("я", 3389371454),
        ("тест", 8839891),
        ("\uffff", 2041487694),
    ],
)
def test_fnv1a32_published_vectors(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_by_hand() -> None:
    assert fnv1a32("a") == ((OFFSET ^ 0x61) * P) & M
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16 (what JS charCodeAt sees), not 4 UTF-8 bytes.
    assert fnv1a32("😀") == ((((OFFSET ^ 0xD83D) * P) & M ^ 0xDE00) * P) & M
    utf8 = OFFSET
    for byte in "😀".encode():
        utf8 = ((utf8 ^ byte) * P) & M
    assert fnv1a32("😀") != utf8


def test_fnv1a32_matches_sdk(ids: list[str]) -> None:
    for s in ids:
        assert fnv1a32(s) == gb.fnv1a32(s), repr(s)


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    [
        ("", "a", 1, 0.22),  # fnv("a") = 3826002220 -> 220 / 1000
        ("b", "a", 1, 0.946),  # version 1 hashes value + seed = "ab"
        ("seed", "a", 2, 0.0505),  # fnv("seeda") = 717764279; fnv("717764279") = 2503390505
        ("", "a", 2, 0.0216),  # fnv("3826002220") = 1854020216
    ],
)
def test_gb_hash_literals(seed: str, value: str, version: int, expected: float) -> None:
    assert gb_hash(seed, value, version) == expected


def test_gb_hash_v2_by_hand() -> None:
    first = fnv1a32("seed" + "a")
    assert first == 717764279
    assert gb_hash("seed", "a", 2) == (fnv1a32(str(first)) % 10000) / 10000 == 2503390505 % 10000 / 10000


def test_gb_hash_unknown_version() -> None:
    assert gb_hash("s", "a", 3) is None
    assert gb_hash("s", "a", 0) is None


@pytest.mark.parametrize("seed", ["", "exp", "catalog-interleaved:v2", "sëed-😀"])
@pytest.mark.parametrize("version", [1, 2])
def test_gb_hash_matches_sdk(ids: list[str], seed: str, version: int) -> None:
    for s in ids:
        assert gb_hash(seed, s, version) == gb.gbhash(seed, s, version), repr(s)


# ---------------------------------------------------------------- bucket ranges and choosing


@pytest.mark.parametrize(
    ("n", "coverage", "weights", "expected"),
    [
        (2, 1, None, [(0, 0.5), (0.5, 1)]),
        (2, 0.5, None, [(0, 0.25), (0.5, 0.75)]),
        (2, 0, None, [(0, 0), (0.5, 0.5)]),
        (4, 1, None, [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
        (2, 1, [0.4, 0.6], [(0, 0.4), (0.4, 1)]),
        (3, 1, [0.2, 0.3, 0.5], [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
        (3, 0.2, [0.2, 0.3, 0.5], [(0, 0.04), (0.2, 0.26), (0.5, 0.6)]),
        (2, -0.2, None, [(0, 0), (0.5, 0.5)]),  # coverage clamped to 0
        (2, 1.5, None, [(0, 0.5), (0.5, 1)]),  # and to 1
        (2, 1, [0.4, 0.1], [(0, 0.5), (0.5, 1)]),  # sum below 0.99: equal weights
        (2, 1, [0.7, 0.6], [(0, 0.5), (0.5, 1)]),  # sum above 1.01
        (2, 1, [0.4, 0.4, 0.2], [(0, 0.5), (0.5, 1)]),  # wrong length
        (3, 1, [0.335, 0.33, 0.33], [(0, 0.335), (0.335, 0.665), (0.665, 0.995)]),  # 0.995 is within tolerance
        (2, 1, [-0.2, 1.2], [(0, 0.5), (0.5, 1)]),  # negative weight: equal weights (as the Python SDK)
    ],
)
def test_bucket_ranges_spec_cases(n: int, coverage: float, weights: list[float] | None, expected: list) -> None:
    got = get_bucket_ranges(n, coverage, weights)
    assert len(got) == len(expected)
    for (a, b), (c, d) in zip(got, expected, strict=True):
        assert a == pytest.approx(c, abs=1e-12) and b == pytest.approx(d, abs=1e-12)


def test_bucket_ranges_match_sdk_exactly() -> None:
    rng = random.Random(7)
    cases = [(n, c, None) for n in range(1, 6) for c in (0, 0.1, 0.33, 0.5, 0.999, 1, -1, 2)]
    for _ in range(300):
        n = rng.randint(2, 6)
        raw = [rng.random() for _ in range(n)]
        weights = [w / sum(raw) for w in raw]
        if rng.random() < 0.3:
            weights[0] += rng.choice([0.005, 0.02, -0.02])  # around the 0.99..1.01 tolerance
        cases.append((n, rng.random() * 1.4 - 0.2, weights))
    for n, coverage, weights in cases:
        assert get_bucket_ranges(n, coverage, weights) == gb.getBucketRanges(n, coverage, weights)


@pytest.mark.parametrize(
    ("n", "ranges", "expected"),
    [
        (0.2, [(0, 0.5), (0.5, 1)], 0),
        (0.6, [(0, 0.5), (0.5, 1)], 1),
        (0.5, [(0, 0.5), (0.5, 1)], 1),  # ranges are half-open
        (0.4, [(0, 0.25), (0.5, 0.75)], -1),  # reduced coverage: in a gap
        (0.8, [(0, 0.25), (0.5, 0.75)], -1),
        (0.5, [(0, 0), (0.5, 0.5)], -1),  # zero coverage: nobody
        (0.0, [(0, 0), (0.5, 0.5)], -1),
        (0.3, [(0, 0.4), (0.2, 0.5)], 0),  # overlapping: the first range wins
    ],
)
def test_choose_variation(n: float, ranges: list, expected: int) -> None:
    assert choose_variation(n, ranges) == expected == gb.chooseVariation(n, ranges)


def test_in_range() -> None:
    assert in_range(0.1, (0.1, 0.2)) and not in_range(0.2, (0.1, 0.2)) and not in_range(0.05, (0.1, 0.2))


# ---------------------------------------------------------------- one visitor, end to end

CONFIGS = [
    {"seed": "exp1", "variants": ["a", "b"], "weights": None, "coverage": 1.0, "hash_version": 2},
    {"seed": "exp1", "variants": ["a", "b", "c"], "weights": [0.2, 0.3, 0.5], "coverage": 0.8, "hash_version": 2},
    {"seed": "legacy", "variants": ["x", "y", "z"], "weights": [0.5, 0.25, 0.25], "coverage": 0.6, "hash_version": 1},
    {"seed": "sëed😀", "variants": ["x", "y"], "weights": [0.1, 0.9], "coverage": 0.5, "hash_version": 1},
    {"seed": "", "variants": ["x", "y"], "weights": [0.3, 0.6], "coverage": 1.0, "hash_version": 2},  # bad weights
]


@pytest.mark.parametrize("config", CONFIGS)
def test_assign_matches_growthbook_run(ids: list[str], config: dict) -> None:
    exp = growthbook.Experiment(
        key="some-key",
        variations=config["variants"],
        weights=config["weights"],
        coverage=config["coverage"],
        hashVersion=config["hash_version"],
        seed=config["seed"] or None,  # the SDK falls back to the key for a falsy seed
    )
    if not config["seed"]:
        exp.key = ""  # so that the effective seed is "" there too
    sdk = growthbook.GrowthBook(attributes={"id": ids[0]})
    enrolled = 0
    for user_id in ids[:1500]:
        sdk.set_attributes({"id": user_id})
        result = sdk.run(exp)
        ours = assign(user_id, **config)
        assert ours.in_experiment == result.inExperiment, repr(user_id)
        assert ours.variant == (result.value if result.inExperiment else None), repr(user_id)
        if result.inExperiment:
            assert ours.hash == result.bucket
            enrolled += 1
    assert enrolled > 300  # the comparison exercised enrolled visitors, not just exclusions


def test_assignment_fields_and_empty_id() -> None:
    a = assign("user-1", seed="exp1", variants=["a", "b"], weights=[0.5, 0.5], coverage=1.0)
    assert isinstance(a, Assignment) and a.user_id == "user-1"
    assert a.hash == gb_hash("exp1", "user-1", 2) and a.variant == ("a" if a.hash < 0.5 else "b") and a.in_experiment
    with pytest.raises(AttributeError):
        a.variant = "b"  # type: ignore[misc]
    # The SDKs never enroll a visitor whose id is empty; the hash is still reported.
    empty = assign("", seed="exp1", variants=["a", "b"])
    assert (empty.variant, empty.in_experiment, empty.hash) == (None, False, gb_hash("exp1", "", 2))


def test_outside_coverage_gets_no_variant() -> None:
    seen_out = 0
    for user_id in uuids(2000, 3):
        a = assign(user_id, seed="cov", variants=["a", "b"], weights=[0.5, 0.5], coverage=0.3)
        # ranges [0, 0.15) and [0.5, 0.65): everything else is outside
        inside = a.hash < 0.15 or 0.5 <= a.hash < 0.65
        assert a.in_experiment == inside and (a.variant is None) == (not inside)
        seen_out += not inside
    assert seen_out > 1000
    assert all(not assign(u, seed="cov", variants=["a", "b"], coverage=0).in_experiment for u in uuids(500, 4))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="hash_version"):
        assign("u", seed="s", variants=["a", "b"], hash_version=3)
    with pytest.raises(ValueError, match="two variants"):
        Assigner(seed="s", variants=["a"])


@pytest.mark.parametrize("config", CONFIGS)
def test_assigner_equals_assign(ids: list[str], config: dict) -> None:
    assigner = Assigner(**config)
    for user_id in ids:
        assert assigner.assign(user_id) == assign(user_id, **config), repr(user_id)


def test_assigner_from_spec_and_record() -> None:
    spec = load_experiment_file(DEMO)
    now = datetime.now(UTC)
    first = ExperimentRecord(spec, "running", 0, now, now, now, None)
    rebucketed = ExperimentRecord(spec, "running", 2, now, now, now, None)
    by_spec, by_first, by_rebucketed = (Assigner.from_experiment(x) for x in (spec, first, rebucketed))
    keys = [v.key for v in spec.variants]
    moved = 0
    for user_id in uuids(500, 5):
        expected = assign(user_id, seed=spec.seed, variants=keys, weights=spec.weights, coverage=spec.coverage)
        assert by_spec.assign(user_id) == by_first.assign(user_id) == expected
        again = by_rebucketed.assign(user_id)
        assert again == assign(user_id, seed=f"{spec.seed}:v2", variants=keys, weights=spec.weights)
        moved += again.variant != expected.variant
    assert 150 < moved < 350  # a new bucket version re-draws everyone (about half move between 2 arms)


# ---------------------------------------------------------------- many visitors at once


@pytest.mark.parametrize("config", CONFIGS)
def test_assign_many_equals_scalar(ids: list[str], config: dict) -> None:
    index, hashes = assign_many(ids, **config)
    assert index.shape == hashes.shape == (len(ids),)
    for user_id, i, h in zip(ids, index.tolist(), hashes.tolist(), strict=True):
        one = assign(user_id, **config)
        assert h == one.hash, repr(user_id)
        assert (config["variants"][i] if i >= 0 else None) == one.variant, repr(user_id)


def test_assign_many_input_kinds(ids: list[str]) -> None:
    assigner = Assigner(**CONFIGS[1])
    ascii_ids = uuids(40000, 9) + ["", "short"]  # more than one block
    ref_index, ref_hash = assigner.assign_many(ascii_ids)
    for user_ids in (np.array(ascii_ids), np.array(ascii_ids, dtype=object), tuple(ascii_ids)):
        index, hashes = assigner.assign_many(user_ids)
        assert np.array_equal(index, ref_index) and np.array_equal(hashes, ref_hash)
    # A numpy unicode array cannot hold trailing NULs, so "a\x00" is stored (and hashed) as "a".
    index, hashes = assigner.assign_many(np.array(ids))
    expected = [assigner.assign(str(u)) for u in np.array(ids)]
    assert hashes.tolist() == [a.hash for a in expected]
    empty_index, empty_hash = assigner.assign_many([])
    assert empty_index.shape == empty_hash.shape == (0,)
    with pytest.raises(ValueError, match="one-dimensional"):
        assigner.assign_many(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="str"):
        assigner.assign_many(["a", 3])  # type: ignore[list-item]


@pytest.mark.parametrize(("weights", "name"), [([0.5, 0.5], "50/50"), ([0.2, 0.3, 0.5], "20/30/50")])
def test_split_is_not_rejected_by_chi_square(weights: list[float], name: str) -> None:
    n = 100_000
    index, _ = assign_many(uuids(n, 11), seed=f"split-{name}", variants=list("abc")[: len(weights)], weights=weights)
    assert (index >= 0).all()
    observed = np.bincount(index, minlength=len(weights))
    assert chisquare(observed, f_exp=np.array(weights) * n).pvalue > 0.001


def test_visitors_keep_their_variant_when_coverage_grows() -> None:
    users = uuids(20000, 13)
    config = {"seed": "grow", "variants": ["a", "b", "c"], "weights": [0.2, 0.3, 0.5]}
    before = None
    for coverage in (0.2, 0.5, 1.0):
        index, _ = assign_many(users, coverage=coverage, **config)
        enrolled = index >= 0
        assert abs(enrolled.mean() - coverage) < 0.02  # about `coverage` of traffic is in
        if before is not None:
            was_in = before >= 0
            assert enrolled[was_in].all()  # nobody leaves...
            assert np.array_equal(index[was_in], before[was_in])  # ...or switches
        before = index


# ---------------------------------------------------------------- the command line


def run_cli(*args: str):
    from armor_ab.cli import app

    return CliRunner().invoke(app, ["assign", *args])


def test_cli_user_id() -> None:
    result = run_cli("--experiment-file", DEMO, "--user-id", "visitor-42")
    assert result.exit_code == 0, result.output
    spec = load_experiment_file(DEMO)
    a = Assigner.from_experiment(spec).assign("visitor-42")
    assert json.loads(result.stdout) == {
        "user_id": "visitor-42", "variant": a.variant, "in_experiment": a.in_experiment, "hash": a.hash
    }


def test_cli_users_file(tmp_path) -> None:
    users = ["alice", "bob", "élève", "😀", "carol"]
    path = tmp_path / "users.txt"
    path.write_bytes(("\n".join(users[:3]) + "\r\n\n" + "\n".join(users[3:]) + "\n").encode())
    result = run_cli("--experiment-file", DEMO, "--users-file", str(path))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assigner = Assigner.from_experiment(load_experiment_file(DEMO))
    assert [r["user_id"] for r in rows] == users
    for row in rows:
        a = assigner.assign(row["user_id"])
        assert (row["variant"], row["in_experiment"], row["hash"]) == (a.variant, a.in_experiment, a.hash)


def test_cli_bad_experiment_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "key: bad\nname: Bad\nvariants:\n  - {key: a, weight: 0.5}\n  - {key: b, weight: 2}\n"
        "metrics: {primary: inquiry_rate}\n"
    )
    result = run_cli("--experiment-file", str(bad), "--user-id", "u")
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "variants[1].weight" in result.stderr
    assert result.stdout == ""


def test_cli_needs_exactly_one_source(tmp_path) -> None:
    both = run_cli("--experiment-file", DEMO, "--user-id", "u",
                   "--users-file", str(tmp_path / "x"))
    neither = run_cli("--experiment-file", DEMO)
    missing = run_cli("--experiment-file", DEMO, "--users-file", str(tmp_path / "x"))
    for result in (both, neither):
        assert result.exit_code == 2 and "exactly one of --user-id or --users-file" in result.stderr
    assert missing.exit_code == 2 and "cannot read file" in missing.stderr

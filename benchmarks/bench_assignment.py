"""Assignment speed: our Assigner against the GrowthBook Python SDK, and bulk assign_many.

    .venv/bin/python benchmarks/bench_assignment.py [--json] [--rounds N]

Single assignment: ns per visitor, the median over rounds; each round times ours and the SDK
back to back on the same visitors, so both see the same machine load, and the ratio is taken
between the two medians. The SDK is used the way its docs suggest for a server: one
``GrowthBook`` context created once, ``set_attributes({"id": ...})`` per visitor, then
``run(experiment)`` with one ``Experiment`` object built once (same seed, weights, coverage and
hash version 2 as ours). Both sides run with the garbage collector paused, as ``timeit`` does.
Ids are 36-character UUID4 strings (what a visitor cookie holds); the hash loop is the bulk of
our cost, so shorter ids widen the gap (the "short ids" rows show it).

Bulk: visitors per second of ``Assigner.assign_many`` on 1,000,000 UUID4 strings in a Python
list (conversion to numpy included), median over rounds.

Goals: single >= 3x faster than the SDK; bulk >= 1,000,000 visitors/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import growthbook  # noqa: E402

from armor_ab.experiments.assignment import Assigner, assign  # noqa: E402

SEED, VARIANTS, WEIGHTS, COVERAGE = "bench-exp", ["control", "armor", "armor-b"], [0.2, 0.3, 0.5], 0.8
SINGLE_GOAL, BULK_GOAL = 3.0, 1_000_000


def uuid_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def ns_per_call(fn: Callable[[str], object], ids: Sequence[str]) -> float:
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for user_id in ids:
            fn(user_id)
        return (time.perf_counter_ns() - start) / len(ids)
    finally:
        gc.enable()


def sdk_runner() -> Callable[[str], growthbook.Result]:
    experiment = growthbook.Experiment(
        key=SEED, variations=VARIANTS, weights=WEIGHTS, coverage=COVERAGE, hashVersion=2, seed=SEED
    )
    context = growthbook.GrowthBook(attributes={"id": ""})

    def run(user_id: str) -> growthbook.Result:
        context.set_attributes({"id": user_id})
        return context.run(experiment)

    return run


def check_agreement(assigner: Assigner, sdk: Callable[[str], growthbook.Result], ids: Sequence[str]) -> None:
    """Timing two different answers would be meaningless: make sure they agree first."""
    for user_id in ids:
        ours, theirs = assigner.assign(user_id), sdk(user_id)
        if ours.variant != (theirs.value if theirs.inExperiment else None):
            raise SystemExit(f"disagreement with the SDK on {user_id!r}: {ours} vs {theirs}")


def single(ids: Sequence[str], rounds: int) -> dict:
    assigner, sdk = Assigner(seed=SEED, variants=VARIANTS, weights=WEIGHTS, coverage=COVERAGE), sdk_runner()
    check_agreement(assigner, sdk, ids[:2000])

    def plain(user_id: str) -> object:
        return assign(user_id, seed=SEED, variants=VARIANTS, weights=WEIGHTS, coverage=COVERAGE)

    ours, pure, theirs = [], [], []
    for _ in range(rounds):
        ours.append(ns_per_call(assigner.assign, ids))
        pure.append(ns_per_call(plain, ids))
        theirs.append(ns_per_call(sdk, ids))
    out = {name: statistics.median(v) for name, v in (("assigner_ns", ours), ("assign_fn_ns", pure), ("sdk_ns", theirs))}
    out["ratio"] = out["sdk_ns"] / out["assigner_ns"]
    out["runs"] = {"assigner_ns": ours, "assign_fn_ns": pure, "sdk_ns": theirs}
    return out


def bulk(ids: list[str], rounds: int) -> dict:
    assigner = Assigner(seed=SEED, variants=VARIANTS, weights=WEIGHTS, coverage=COVERAGE)
    assigner.assign_many(ids[:10000])  # warm-up: first-touch page faults are not throughput
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        assigner.assign_many(ids)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"n": len(ids), "seconds": median, "visitors_per_s": len(ids) / median, "runs_s": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per measurement (>= 5)")
    parser.add_argument("--single-ids", type=int, default=10_000)
    parser.add_argument("--bulk-ids", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5: the figures are medians")

    uuids = uuid_ids(args.single_ids, 1)
    short = [f"visitor-{i:06d}" for i in random.Random(2).sample(range(1_000_000), args.single_ids)]
    result = {
        "python": platform.python_version(),
        "growthbook": growthbook.__version__ if hasattr(growthbook, "__version__") else "unknown",
        "rounds": args.rounds,
        "single_uuid": single(uuids, args.rounds),
        "single_short": single(short, args.rounds),
        "bulk": bulk(uuid_ids(args.bulk_ids, 3), args.rounds),
    }
    s, b = result["single_uuid"], result["bulk"]
    result["single_pass"] = s["ratio"] >= SINGLE_GOAL
    result["bulk_pass"] = b["visitors_per_s"] >= BULK_GOAL

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verdict = {True: "PASS", False: "FAIL"}
    short_s = result["single_short"]
    print(f"Assignment benchmark (Python {result['python']}, growthbook {result['growthbook']}, "
          f"median of {args.rounds} runs)\n")
    print("| measurement | ours | GrowthBook SDK | ratio | goal | verdict |")
    print("|---|---|---|---|---|---|")
    print(f"| single, UUID ids: Assigner.assign | {s['assigner_ns']:,.0f} ns/op | {s['sdk_ns']:,.0f} ns/op "
          f"| {s['ratio']:.2f}x | >= {SINGLE_GOAL:.0f}x | {verdict[result['single_pass']]} |")
    print(f"| single, UUID ids: assign() function | {s['assign_fn_ns']:,.0f} ns/op | | "
          f"{s['sdk_ns'] / s['assign_fn_ns']:.2f}x | (info) | |")
    print(f"| single, short ids: Assigner.assign | {short_s['assigner_ns']:,.0f} ns/op | "
          f"{short_s['sdk_ns']:,.0f} ns/op | {short_s['ratio']:.2f}x | (info) | |")
    print(f"| bulk assign_many, {b['n']:,} UUID ids | {b['visitors_per_s']:,.0f} visitors/s "
          f"({b['seconds'] * 1000:,.0f} ms) | | | >= {BULK_GOAL:,} /s | {verdict[result['bulk_pass']]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

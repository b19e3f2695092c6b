"""``bench_api.py`` on two commits in the same run: this tree against a base commit, rounds interleaved.

A redesign must not cost throughput. The base commit is exported with ``git archive`` into a temp
folder (no checkout, no worktree), and each round runs ``bench_api.py --runs 1 --json`` once in the
base tree and once in this tree, alternating which goes first, so drift on a shared machine hits
both alike. Each run measures its own hello-world baseline, so the page-route ratios are comparable
across trees; events/s is compared directly (base and new in the same rounds).

Run: ``.venv/bin/python benchmarks/compare_api.py [--base 7a94534] [--rounds 5] [--seconds 5] [--json]``
(7a94534 is the last commit before the issue-14 redesign.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRE_REDESIGN = "7a94534"
MEASURES = ("assign_ratio", "content_ratio", "events_per_s", "hello_rps", "assign_rps", "content_rps")


def export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` under ``into`` (its tracked files only)."""
    archive = into / "base.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    archive.unlink()
    return into / "tree"


def bench_once(tree: Path, seconds: int) -> dict:
    """One ``bench_api.py --runs 1`` in ``tree``: its server runs that tree's ``armor_ab`` (cwd first on sys.path)."""
    done = subprocess.run([sys.executable, "benchmarks/bench_api.py", "--runs", "1", "--seconds", str(seconds), "--json"],
                          cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_api.py failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout[done.stdout.index("{"):])


def median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=PRE_REDESIGN)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="armor-compare-") as tmp:
        base_tree = export(args.base, Path(tmp))
        runs: dict[str, list[dict]] = {"base": [], "new": []}
        for i in range(args.rounds):
            order = [("base", base_tree), ("new", ROOT)] if i % 2 == 0 else [("new", ROOT), ("base", base_tree)]
            for name, tree in order:
                runs[name].append(bench_once(tree, args.seconds))
                print(f"round {i + 1}/{args.rounds} {name}: assign {runs[name][-1]['assign_ratio']:.2f}, "
                      f"content {runs[name][-1]['content_ratio']:.2f}, events/s {runs[name][-1]['events_per_s']:,.0f}",
                      file=sys.stderr, flush=True)
    result = {name: {m: median([r[m] for r in rs]) for m in MEASURES} for name, rs in runs.items()}
    result["events_ratio_new_to_base"] = result["new"]["events_per_s"] / result["base"]["events_per_s"]
    result["base_commit"] = args.base
    result["goals"] = {
        "assignment >= 0.70 of hello world": result["new"]["assign_ratio"] >= 0.70,
        "content >= 0.70 of hello world": result["new"]["content_ratio"] >= 0.70,
        "events/s >= 0.9x the base commit": result["events_ratio_new_to_base"] >= 0.9,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"| measure (median of {args.rounds}) | base {args.base} | this tree |")
    print("|---|---:|---:|")
    print(f"| assignment / hello world | {result['base']['assign_ratio']:.2f} | {result['new']['assign_ratio']:.2f} |")
    print(f"| content / hello world | {result['base']['content_ratio']:.2f} | {result['new']['content_ratio']:.2f} |")
    print(f"| events/s | {result['base']['events_per_s']:,.0f} | {result['new']['events_per_s']:,.0f} |")
    print(f"| events/s, this tree / base | | {result['events_ratio_new_to_base']:.2f} |")
    for goal, ok in result["goals"].items():
        print(f"{goal}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()

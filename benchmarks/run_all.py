"""Run every benchmark in this folder in turn (``make bench``); each prints its own table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    failed = []
    for bench in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {bench.name}\n", flush=True)
        if subprocess.run([sys.executable, str(bench)], check=False).returncode != 0:
            failed.append(bench.name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")

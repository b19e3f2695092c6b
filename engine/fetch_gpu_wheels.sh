#!/usr/bin/env bash
# engine/fetch_gpu_wheels.sh - download the wheels engine/gpu_check.sh needs on the lent GPU machine into .whl/.
#
#   bash engine/fetch_gpu_wheels.sh            # here (PyPI reachable); then run the check with carry: [".whl"]
#
# Reads engine/gpu_wheels.txt (NAME==VERSION lines) and fetches exactly those, without their dependencies,
# as cp312 manylinux x86_64 or pure-Python wheels (the machine runs Python 3.12.3 on x86-64 and reaches no
# registry). Stale wheels (a name or version not in the list) are removed first, so .whl/ holds one version
# of each. Fails if the wheels come to more than MAX_MIB (default 32) MiB: a device call carries 64 MiB in all,
# the working tree included (about 24 MiB, most of it the shipped demo model).
set -euo pipefail
cd "$(dirname "$0")/.."

LIST=engine/gpu_wheels.txt
DEST=.whl
MAX_MIB="${MAX_MIB:-32}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

mkdir -p "$DEST"
# One version of each: drop wheels whose name==version is not listed (an older pin, say).
"$PY" - "$LIST" "$DEST" <<'PYEOF'
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

wanted = set()
for line in Path(sys.argv[1]).read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        wanted.add((canonicalize_name(name), version.strip()))
for wheel in Path(sys.argv[2]).glob("*.whl"):
    name, version, _, _ = parse_wheel_filename(wheel.name)
    if (name, str(version)) not in wanted:
        print(f"fetch_gpu_wheels: removing {wheel.name} (not in the list)")
        wheel.unlink()
PYEOF

platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 "${platforms[@]}" -d "$DEST" -r "$LIST"

wheels=("$DEST"/*.whl)
total=$(du -cb "${wheels[@]}" | tail -1 | cut -f1)
awk -v n="${#wheels[@]}" -v b="$total" -v d="$DEST" \
    'BEGIN { printf "fetch_gpu_wheels: %d wheels, %.1f MiB in %s/\n", n, b / 1048576, d }'
du -b "${wheels[@]}" | awk '{ printf "  %8.1f KiB  %s\n", $1 / 1024, $2 }'
if [ "$total" -gt $((MAX_MIB * 1048576)) ]; then
    echo "fetch_gpu_wheels: the wheels exceed $MAX_MIB MiB: the device call carries 64 MiB in all" >&2
    exit 1
fi

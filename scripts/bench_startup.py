"""How long the command line takes to answer: ``wmtp --help``, ``wmtp eval --help`` and ``wmtp --version``
against ``hf --help`` (huggingface_hub's CLI), in one run.

The commands run in interleaved rounds (one of each per round, so a change in the machine's load touches all
of them alike), ``--repeats`` rounds after one warm-up round; the figure is each command's median wall time
from process start to exit. Run it on an otherwise idle machine::

    python scripts/bench_startup.py            # 5 rounds
    python scripts/bench_startup.py --repeats 9 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "wmtp --help": ["wmtp", "--help"],
    "wmtp eval --help": ["wmtp", "eval", "--help"],
    "wmtp --version": ["wmtp", "--version"],
    "hf --help": ["hf", "--help"],
}


def executable(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else the one on PATH."""
    beside = BIN / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name} is not installed (pip install -e . installs wmtp; huggingface_hub installs hf)")
    return found


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {result.stderr.decode()[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="Measured rounds (after one warm-up round).")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    env = {**os.environ, "COLUMNS": "100", "HF_HUB_DISABLE_TELEMETRY": "1"}
    argvs = {label: [executable(argv[0]), *argv[1:]] for label, argv in COMMANDS.items()}
    times: dict[str, list[float]] = {label: [] for label in argvs}
    for round_index in range(args.repeats + 1):
        for label, argv in argvs.items():
            elapsed = wall_time(argv, env)
            if round_index > 0:  # the first round warms the file cache and the bytecode
                times[label].append(elapsed)

    medians = {label: statistics.median(values) for label, values in times.items()}
    reference = medians["hf --help"]
    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'/ hf --help':>11}")
    for label, values in times.items():
        print(f"{label:<20} {medians[label]:>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
              f"{medians[label] / reference:>11.2f}")  # fmt: skip
    print(f"{args.repeats} interleaved rounds; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "seconds": times, "median": medians}, indent=2))


if __name__ == "__main__":
    main()

"""Throughput of the sandbox executor on real reference solutions.

    python scripts/bench_execution.py [--data ../shared/data] [--workers N] [--repeats R]

Runs MBPP's 500 test-split references under bubblewrap and without it, side by side in the same
run, then the CodeContests sample's 224 references (2,239 stdin/stdout tests), and prints
programs per second with the machine's facts. Reads ``../shared/data`` beside the project.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wmtp_cli.config import DataConfig
from wmtp_cli.data.sources import load_problems
from wmtp_cli.execution import Executor, Job, bwrap_available, job_for
from wmtp_cli.execution.sandbox import python_executable, running_as_root

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def reference_jobs(source: str, path: Path, split: str) -> list[Job]:
    """One job per problem, its first reference solution, read by the project's own loader."""
    problems = load_problems(DataConfig(source=source, path=str(path), split=split))
    return [job_for(problem, problem["solutions"][0]) for problem in problems if problem["solutions"]]


def machine_facts() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        bwrap = "not installed"
    return [
        f"cores: {os.cpu_count()} ({cpu})",
        f"python: {platform.python_version()} at {python_executable()}",
        f"system: {platform.system()} {platform.release()}; running as root: {running_as_root()}",
        f"bubblewrap: {bwrap}; usable: {bwrap_available()}",
    ]


def bench(label: str, executor: Executor, jobs: list[Job], repeats: int) -> None:
    best, results = float("inf"), []
    for _ in range(repeats):
        started = time.monotonic()
        results = executor.run(jobs)
        best = min(best, time.monotonic() - started)
    passed = sum(r.passed for r in results)
    tests = sum(r.n_tests for r in results)
    print(
        f"{label:<34} {len(jobs):>4} programs {tests:>5} tests  {best:7.1f} s  "
        f"{len(jobs) / best:6.1f} programs/s  {tests / best:6.1f} tests/s  passed {passed}/{len(jobs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"benchmark data not found at {args.data}")
    for fact in machine_facts():
        print(fact)
    workers = args.workers or os.cpu_count()
    print(f"workers: {workers}\n")
    isolations = (["bwrap"] if bwrap_available() else []) + ["none"]
    mbpp = reference_jobs("mbpp", args.data / "mbpp" / "test.jsonl", "test")
    for isolation in isolations:
        bench(f"MBPP test refs, {isolation}", Executor(isolation=isolation, workers=workers), mbpp, args.repeats)
    codecontests = reference_jobs("codecontests", args.data / "codecontests_sample" / "train.jsonl", "train")
    for isolation in isolations:
        executor = Executor(isolation=isolation, workers=workers)
        bench(f"CodeContests refs, {isolation}", executor, codecontests, args.repeats)


if __name__ == "__main__":
    main()

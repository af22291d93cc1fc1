"""Run generated programs against their tests in a sandbox (DESIGN.md section 4).

Used by ``wmtp score`` (execution rewards) and ``wmtp eval`` (pass@k)::

    from wmtp_cli.execution import Executor, job_for, require_code_execution

    require_code_execution(args.allow_code_execution)
    with Executor(timeout_s=10, memory_mb=1024) as executor:
        results = executor.run([job_for(record, completion) for completion in completions])
    rewards = [r.fraction for r in results]  # or float(r.passed)

A command that knows early it will run programs may call ``start_sandboxes_early()`` first: the
sandboxes start in the background while it loads, and the next executor takes them.

Modules: ``jobs`` (:class:`Job`, :class:`ExecutionResult`), ``executor`` (the worker pool),
``slot`` (one long-lived sandbox and its server), ``isolation`` (bubblewrap, or nothing when asked
for; fail closed), ``verdicts`` (the rules for "passed", applied outside the sandbox), ``consent``
(the explicit opt-in), and ``inside/`` (the server, the judge and the program's side, which run in
the sandbox).
"""

from wmtp_cli.execution.consent import require_code_execution
from wmtp_cli.execution.executor import PYTHON_TIME_FACTOR, Executor, start_sandboxes_early
from wmtp_cli.execution.isolation import ISOLATIONS, bwrap_available, describe_isolation, resolve_isolation
from wmtp_cli.execution.jobs import STATUSES, ExecutionResult, Job, job_for
from wmtp_cli.execution.verdicts import normalize_output, outputs_match

__all__ = [
    "ISOLATIONS",
    "PYTHON_TIME_FACTOR",
    "STATUSES",
    "ExecutionResult",
    "Executor",
    "Job",
    "bwrap_available",
    "describe_isolation",
    "job_for",
    "normalize_output",
    "outputs_match",
    "require_code_execution",
    "resolve_isolation",
    "start_sandboxes_early",
]

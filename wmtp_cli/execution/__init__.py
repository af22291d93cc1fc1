"""Run generated programs against their tests in a sandbox (DESIGN.md section 4).

Used by ``wmtp score`` (execution rewards) and ``wmtp eval`` (pass@k)::

    from wmtp_cli.execution import Executor, job_for, require_code_execution

    require_code_execution(args.allow_code_execution)
    with Executor(timeout_s=10, memory_mb=1024) as executor:
        results = executor.run([job_for(record, completion) for completion in completions])
    rewards = [r.fraction for r in results]  # or float(r.passed)

Modules: ``jobs`` (:class:`Job`, :class:`ExecutionResult`), ``executor`` (the worker pool),
``sandbox`` (bubblewrap or limits-only isolation, per-job identity and cleanup), ``harness`` (the
code that runs inside the sandbox: a supervisor and its workers), ``judge`` (verdicts from the
harness's report and the output files), ``consent`` (the explicit opt-in).
"""

from wmtp_cli.execution.consent import require_code_execution
from wmtp_cli.execution.executor import PYTHON_TIME_FACTOR, Executor
from wmtp_cli.execution.jobs import STATUSES, ExecutionResult, Job, job_for
from wmtp_cli.execution.judge import normalize_output, outputs_match
from wmtp_cli.execution.sandbox import bwrap_available

__all__ = [
    "PYTHON_TIME_FACTOR",
    "STATUSES",
    "ExecutionResult",
    "Executor",
    "Job",
    "bwrap_available",
    "job_for",
    "normalize_output",
    "outputs_match",
    "require_code_execution",
]

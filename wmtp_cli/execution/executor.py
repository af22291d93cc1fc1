"""Run many programs against their tests, a few at a time, and say how each did.

Each job gets a private working folder and one harness process (see ``harness.py``) in the chosen
sandbox (see ``sandbox.py``); a pool of threads launches and waits on them, since the work itself
happens in the child processes. Resource limits are set by the harness itself before any program
code runs, not by a ``preexec_fn``, which is not safe in a process with threads. Output is
capped by ``RLIMIT_FSIZE`` on the files a program's stdout goes to: the kernel stops the write
at the cap, so a program printing a gigabyte fails at once and nothing large is ever read here.

The executor never raises because of what a program did: every way a program can misbehave ends
as an :class:`ExecutionResult`. It does raise when the machine cannot run jobs at all (no
temporary folder, no interpreter), rather than scoring everything 0.
"""

from __future__ import annotations

import ast
import marshal
import os
import secrets
import selectors
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from wmtp_cli.execution import judge
from wmtp_cli.execution.jobs import ExecutionResult, Job
from wmtp_cli.execution.sandbox import Sandbox, hand_over, kill_job_processes, remove_tree, resolve_isolation

# CodeContests' time limits are set for C++ judges (all 2 s in the sample). The slowest Python
# reference test of the sample takes 2.0 s with both cores of a 2-core AMD EPYC busy, i.e. at the
# limit itself; 5x leaves room for slower CI machines and still stops a loop within 10 s.
PYTHON_TIME_FACTOR = 5.0
REPORT_BYTES = 4 << 20  # the harness's report is one line of a few hundred bytes a test
_STARTUP_GRACE_S = 10.0  # over the sum of the time limits, before the executor kills a harness


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


class Executor:
    """Runs jobs in a sandbox, ``workers`` at a time (``sandbox.py`` says what is isolated how).

    ``timeout_s``: time limit for a job whose ``timeout_s`` is None, for the whole run of assert
    tests and for each test of stdin/stdout tests. A job's own ``timeout_s`` (the source's limit,
    e.g. CodeContests' seconds per test) is multiplied by ``time_limit_factor`` instead.
    ``memory_mb``: address-space limit of every process. ``max_output_bytes``: stdout kept per test
    (more is a failure, and the program is stopped there). ``max_file_bytes``: largest file a
    program may write (default: ``max_output_bytes``). ``max_processes``: processes and threads a
    program may have at once, where the kernel can count them per job (see ``sandbox.py``).

    Stdin/stdout tests run one after another, each in a fresh fork; after the first one that
    times out the rest are not run (they count as failed), which bounds what a looping program
    costs at one time limit rather than one per test.
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        isolation: str = "auto",
        max_output_bytes: int = 1_000_000,
        max_processes: int = 64,
        max_file_bytes: int | None = None,
        time_limit_factor: float = PYTHON_TIME_FACTOR,
    ):
        if timeout_s <= 0 or time_limit_factor <= 0:
            raise ValueError("timeout_s and time_limit_factor must be positive")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (the interpreter needs it), not {memory_mb}")
        if max_output_bytes < 1 or max_processes < 1:
            raise ValueError("max_output_bytes and max_processes must be positive")
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.isolation = resolve_isolation(isolation)
        self.max_output_bytes = int(max_output_bytes)
        self.max_processes = int(max_processes)
        self.max_file_bytes = int(max_file_bytes if max_file_bytes is not None else max_output_bytes)
        self.time_limit_factor = float(time_limit_factor)
        self._sandbox = Sandbox(self.isolation)
        self._host_pid_ns = _pid_namespace()
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closing = False

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Kill whatever is still running (after an interrupt); the executor can be used again."""
        with self._lock:
            live = list(self._live)
        for proc in live:
            kill_job_processes(proc.pid, whole_session=self.isolation == "none")

    def time_limit(self, job: Job) -> float:
        """Seconds allowed per test (stdio) or for the whole run (assert)."""
        if job.timeout_s is None or job.timeout_s <= 0:
            return self.timeout_s
        return job.timeout_s * self.time_limit_factor

    def run(self, jobs: Sequence[Job], progress: Callable[[int, int], None] | None = None) -> list[ExecutionResult]:
        """Results in job order; ``progress(done, total)`` after each job (on the calling thread)."""
        jobs = list(jobs)
        if not jobs:
            return []
        results: list[ExecutionResult | None] = [None] * len(jobs)
        self._closing = False
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)), thread_name_prefix="wmtp-exec") as pool:
            futures = {pool.submit(self._run_job, job): index for index, job in enumerate(jobs)}
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    results[futures[future]] = future.result()
                    if progress is not None:
                        progress(done, len(jobs))
            except BaseException:
                self._closing = True
                for future in futures:
                    future.cancel()
                self.close()
                raise
        return results  # type: ignore[return-value]

    def _run_job(self, job: Job) -> ExecutionResult:
        start = time.monotonic()
        tests = job.tests
        n_tests = job.n_tests
        if n_tests == 0:
            return ExecutionResult(False, 0, 0, "error", "the job has no tests", 0.0)
        if tests["kind"] not in ("assert", "stdio"):
            return ExecutionResult(False, 0, n_tests, "error", f"unknown test kind {tests['kind']!r}", 0.0)
        if tests["kind"] == "stdio" and len(tests["outputs"]) != n_tests:
            detail = f"{n_tests} test inputs but {len(tests['outputs'])} expected outputs"
            return ExecutionResult(False, 0, n_tests, "error", detail, 0.0)
        limit = self.time_limit(job)
        workdir = Path(tempfile.mkdtemp(prefix="wmtp-exec-"))
        try:
            launch = self._sandbox.launch(workdir)
            marker = secrets.token_hex(16)
            self._write_spec(workdir, job, launch, marker, limit)
            runs = n_tests if tests["kind"] == "stdio" else 1
            deadline = start + limit * runs + _STARTUP_GRACE_S + 0.1 * runs
            report, timed_out, returncode = self._launch_and_wait(launch, workdir, deadline)
            seconds = time.monotonic() - start
            summary = _parse_report(report, marker)
            if summary is None:
                return judge.judge_missing_report(n_tests, returncode, timed_out, workdir, seconds)
            try:
                if tests["kind"] == "assert":
                    return judge.judge_assert(summary, n_tests, limit, workdir, self.max_output_bytes, seconds)
                return judge.judge_stdio(summary, tests["outputs"], limit, workdir, self.max_output_bytes, seconds)
            except (KeyError, TypeError, IndexError, AttributeError):  # a report in the wrong shape
                return judge.judge_missing_report(n_tests, returncode, timed_out, workdir, seconds)
        finally:
            remove_tree(workdir)

    def _write_spec(self, workdir: Path, job: Job, launch, marker: str, limit: float) -> None:
        tests = job.tests
        if tests["kind"] == "stdio":
            for index, text in enumerate(tests["inputs"]):
                (workdir / f"in_{index}").write_bytes(text.encode("utf-8", "surrogateescape"))
        spec = {
            "marker": marker,
            "kind": tests["kind"],
            "program": job.program,
            "setup": tests["setup"] if tests["kind"] == "assert" else "",
            "statements": list(tests["statements"]) if tests["kind"] == "assert" else [],
            "n_inputs": len(tests["inputs"]) if tests["kind"] == "stdio" else 0,
            "time_limit": float(limit),
            "memory_bytes": self.memory_mb * 2**20,
            "file_bytes": self.max_file_bytes + 1,  # one byte over the cap shows the program exceeded it
            "nproc": self.max_processes if launch.nproc_enforced else None,
            "uid": launch.uid,
            "private_pid_ns": launch.private_pid_ns,
            "host_pid_ns": self._host_pid_ns,
            "subreaper": launch.subreaper,
        }
        spec_path = workdir / "spec"
        spec_path.write_bytes(marshal.dumps(spec))
        os.chmod(spec_path, 0o600)  # the harness reads it before any program runs, then deletes it
        hand_over(workdir, launch)

    def _launch_and_wait(self, launch, workdir: Path, deadline: float) -> tuple[bytes, bool, int | None]:
        """Start the harness, read its report until it closes or the deadline; always clean up."""
        if self._closing:
            return b"", False, None
        with open(workdir / "harness.err", "wb") as stderr:
            proc = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
            )
        with self._lock:
            self._live.add(proc)
        report, timed_out = b"", True
        try:
            # The pipe closes when the harness exits (under bwrap: when the whole namespace is gone).
            report, timed_out = _read_until_closed(proc.stdout, deadline, REPORT_BYTES)
        finally:
            # Kill before reaping: until proc.wait() the process id cannot be reused by another group.
            kill_job_processes(proc.pid, whole_session=self.isolation == "none" and (timed_out or not report))
            proc.stdout.close()
            proc.wait()
            with self._lock:
                self._live.discard(proc)
        return report, timed_out, proc.returncode


def _read_until_closed(stream, deadline: float, cap: int) -> tuple[bytes, bool]:
    """Everything written to ``stream`` until its writers close it (at most ``cap`` bytes kept)."""
    data = bytearray()
    fd = stream.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(data), True
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(data), False
            if len(data) < cap:
                data += chunk[: cap - len(data)]


def _parse_report(report: bytes, marker: str) -> dict | None:
    """The last line that starts with this run's marker, as a dict; None when there is none."""
    prefix = marker.encode() + b" "
    for line in reversed(report.split(b"\n")):
        if line.startswith(prefix):
            try:
                summary = ast.literal_eval(line[len(prefix) :].decode("utf-8", "replace"))
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                continue
            if isinstance(summary, dict):
                return summary
    return None

"""Run many programs against their tests, a few at a time, and say how each did.

The executor keeps ``workers`` slots (``slot.py``): long-lived sandboxes (``isolation.py``) whose
servers (``inside/server.py``) run one job at a time, each in fresh forks, so the sandbox and the
interpreter start once per slot rather than once per program. A pool of threads feeds the slots;
the work itself happens in the servers' children. The verdict is decided outside the program's
reach: assert tests by the judge beside it, stdin/stdout tests here (``verdicts.py``).

The executor never raises because of what a program did: every way a program can misbehave ends
as an :class:`ExecutionResult`. It does raise when the machine cannot run jobs at all (no working
isolation: a :class:`~wmtp_cli.errors.UsageError` saying what to do), rather than scoring
everything 0.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from wmtp_cli.execution import isolation as _isolation
from wmtp_cli.execution import verdicts
from wmtp_cli.execution.isolation import describe_isolation, resolve_isolation, running_as_root
from wmtp_cli.execution.jobs import ExecutionResult, Job
from wmtp_cli.execution.slot import Slot, SlotFailure

# CodeContests' time limits are set for C++ judges (all 2 s in the sample). The slowest Python
# reference test of the sample takes 2.0 s with both cores of a 2-core AMD EPYC busy, i.e. at the
# limit itself; 5x leaves room for slower CI machines and still stops a loop within 10 s.
PYTHON_TIME_FACTOR = 5.0
_GRACE_S = 10.0  # over a job's time limits, before the executor gives up on its slot
_MESSAGE_OVERHEAD = 32 << 20  # a server message beyond the program's output (the judge's report, stderr tails)


class Executor:
    """Runs jobs in sandboxes, ``workers`` at a time (``isolation.py`` says what is isolated how).

    ``timeout_s``: time limit for a job whose ``timeout_s`` is None, for the whole run of assert
    tests and for each test of stdin/stdout tests. A job's own ``timeout_s`` (the source's limit,
    e.g. CodeContests' seconds per test) is multiplied by ``time_limit_factor`` instead.
    ``memory_mb``: memory of a job, all its processes together. ``max_output_bytes``: stdout kept
    per test (more is a failure, and the program is stopped there). ``max_file_bytes``: largest file
    a program may write (default: ``max_output_bytes``). ``max_processes``: processes and threads a
    program may have at once. ``isolation``: ``"auto"`` (bubblewrap, or refuse), ``"bwrap"`` or
    ``"none"`` (unsafe).

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
        self._slots: queue.Queue[Slot] = queue.Queue()
        self._all_slots: list[Slot] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def isolation_description(self) -> str:
        """Which isolation runs the programs, for result files."""
        return describe_isolation(self.isolation)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Kill every sandbox (and what runs in it); the executor starts new ones if used again."""
        with self._lock:
            slots, self._all_slots = self._all_slots, []
            self._slots = queue.Queue()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for slot in slots:
            slot.close()

    def __del__(self) -> None:
        # Sandboxes of an executor nobody closed end with it (at the latest with the process: bwrap's
        # --die-with-parent). Not when __init__ refused its arguments, nor while the interpreter shuts down.
        with contextlib.suppress(Exception):
            if hasattr(self, "_lock"):
                self.close()

    def time_limit(self, job: Job) -> float:
        """Seconds allowed per test (stdio) or for the whole run (assert)."""
        if job.timeout_s is None or job.timeout_s <= 0:
            return self.timeout_s
        return job.timeout_s * self.time_limit_factor

    def run(
        self,
        jobs: Sequence[Job],
        progress: Callable[[int, int], None] | None = None,
        started: Sequence[Future | None] | None = None,
    ) -> list[ExecutionResult]:
        """Results in job order; ``progress(done, total)`` after each job (on the calling thread).

        ``started``: for each job, the future :meth:`submit` returned when it was started earlier, or None.
        """
        futures = [
            (started[i] if started is not None and started[i] is not None else self.submit(job))
            for i, job in enumerate(jobs)
        ]
        index = {future: i for i, future in enumerate(futures)}
        results: list[ExecutionResult | None] = [None] * len(futures)
        try:
            for done, future in enumerate(as_completed(index), 1):
                results[index[future]] = future.result()
                if progress is not None:
                    progress(done, len(futures))
        except BaseException:
            for future in futures:
                future.cancel()
            self.close()
            raise
        return results  # type: ignore[return-value]

    def start(self) -> None:
        """Start the sandboxes now, in the background, so they are ready when the first jobs come (each takes
        about 0.1 s: bubblewrap, and an interpreter importing what programs use). Sandboxes started early
        (:func:`start_sandboxes_early`) with this executor's isolation are taken first."""
        with self._lock:
            missing = max(0, self.workers - len(self._all_slots))
            early = _take_early_slots(self.isolation, missing)
            fresh = [Slot(self.isolation) for _ in range(missing - len(early))]
            self._all_slots.extend(early + fresh)
        for slot in early:
            self._slots.put(slot)
        for slot in fresh:
            self._slots.put(slot)
            _start_in_background(slot)

    def submit(self, job: Job) -> Future:
        """Start ``job`` now, on the executor's ``workers`` threads; its :class:`ExecutionResult` comes later
        (:meth:`run` collects it given the future). For jobs that exist before all do: ``wmtp eval`` tests each
        problem's samples while the model generates the next ones."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="wmtp-exec")
            return self._pool.submit(self._run_job, job)

    # -----------------------------------------------------------------------------------------

    def _take_slot(self) -> Slot:
        try:
            return self._slots.get_nowait()
        except queue.Empty:
            slot = Slot(self.isolation)
            with self._lock:
                self._all_slots.append(slot)
            return slot

    def _run_job(self, job: Job) -> ExecutionResult:
        started = time.monotonic()
        tests, n_tests = job.tests, job.n_tests
        if n_tests == 0:
            return ExecutionResult(False, 0, 0, "error", "the job has no tests", 0.0)
        if tests["kind"] not in ("assert", "stdio"):
            return ExecutionResult(False, 0, n_tests, "error", f"unknown test kind {tests['kind']!r}", 0.0)
        if tests["kind"] == "stdio" and len(tests["outputs"]) != n_tests:
            detail = f"{n_tests} test inputs but {len(tests['outputs'])} expected outputs"
            return ExecutionResult(False, 0, n_tests, "error", detail, 0.0)
        limit = self.time_limit(job)
        runs = n_tests if tests["kind"] == "stdio" else 1
        deadline = started + limit * runs + _GRACE_S + 0.1 * runs
        slot = self._take_slot()
        outcomes: list[dict] = []
        try:
            for message in slot.run(self._spec(job, limit), deadline, self._message_cap()):
                if message[0] == "test":
                    outcomes.append(message[2])
                elif message[0] == "result":
                    return self._verdict(job, message[1], outcomes, limit, time.monotonic() - started)
        except SlotFailure as failure:
            status = "timeout" if failure.timed_out else "error"
            return verdicts.result(0, n_tests, status, str(failure), time.monotonic() - started)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:  # a message in the wrong shape
            slot.close()
            detail = f"the sandbox's server sent a malformed report ({type(exc).__name__})"
            return verdicts.result(0, n_tests, "error", detail, time.monotonic() - started)
        finally:
            self._slots.put(slot)
        return verdicts.result(0, n_tests, "error", "the sandbox's server sent no result", time.monotonic() - started)

    def _verdict(self, job: Job, summary: dict, outcomes: list[dict], limit: float, seconds: float):
        summary = {**summary, "seconds": seconds}
        if job.tests["kind"] == "assert":
            verdict = verdicts.judge_assert(summary, job.n_tests, limit, self.max_output_bytes)
            cpu = summary["run"]["cpu_seconds"] if summary.get("run") else 0.0
        else:
            verdict = verdicts.judge_stdio(outcomes, job.tests["outputs"], limit, self.max_output_bytes, seconds,
                                           summary.get("compile_error"))  # fmt: skip
            cpu = sum(outcome["cpu_seconds"] for outcome in outcomes)
        verdict.cpu_seconds = round(cpu, 6)
        return verdict

    def _message_cap(self) -> int:
        # stdout travels as JSON-escaped latin-1: at most 6 bytes a byte
        return 6 * (self.max_output_bytes + 1) + _MESSAGE_OVERHEAD

    def _spec(self, job: Job, limit: float) -> dict:
        tests = job.tests
        assert_tests = tests["kind"] == "assert"
        # The kernel counts RLIMIT_NPROC per user: per job where each job has its own user id (root) or its own
        # user namespace (bubblewrap); otherwise it would count every process of the user running wmtp.
        nproc_enforced = running_as_root() or self.isolation == "bwrap"
        return {
            "kind": tests["kind"],
            "program": job.program,
            "prefix": job.prefix if assert_tests else "",
            "setup": tests["setup"] if assert_tests else "",
            "statements": list(tests["statements"]) if assert_tests else [],
            "entry_points": list(job.entry_points) if job.entry_points is not None else None,
            "inputs": list(tests["inputs"]) if not assert_tests else [],
            "time_limit": float(limit),
            "memory_bytes": self.memory_mb * 2**20,
            "file_bytes": self.max_file_bytes + 1,  # one byte over the cap shows the program exceeded it
            "nproc": self.max_processes if nproc_enforced else None,
            "max_output": self.max_output_bytes,
        }


# ---------------------------------------------------------------------------------------------
# Sandboxes started before an executor exists.

_early_slots: list[Slot] = []  # started by start_sandboxes_early; the next executor's start() takes them
_early_lock = threading.Lock()


def start_sandboxes_early(isolation: str = "auto", workers: int | None = None) -> None:
    """Start bubblewrap sandboxes in the background now, before any executor exists: a command that will score
    programs calls this first thing, so that they start on the idle core while it parses its arguments and
    loads its data (about 0.15 s at ``wmtp eval``'s start). The next :meth:`Executor.start` with the same
    isolation takes them and closes the rest; whatever no executor took is closed at exit
    (:func:`close_early_sandboxes`).

    Only for ``auto`` and ``bwrap``, and only where bubblewrap works (otherwise the executor says why, as
    ever). ``workers``: how many (default: one per core, as an executor's).
    """
    if isolation not in ("auto", "bwrap"):
        return
    slots = [Slot("bwrap") for _ in range(max(1, workers or os.cpu_count() or 1))]
    with _early_lock:
        _early_slots.extend(slots)

    def start() -> None:  # the check runs a sandbox too (30 ms): not on the caller's thread either
        if _isolation.find_bwrap()[0] is not None:
            for slot in slots:
                _start_in_background(slot)

    threading.Thread(target=start, name="wmtp-sandbox-start", daemon=True).start()


def close_early_sandboxes() -> None:
    """Close the sandboxes :func:`start_sandboxes_early` started that no executor took (also run at exit)."""
    _retire_all(_pop_early_slots())


def _take_early_slots(isolation: str, wanted: int) -> list[Slot]:
    """Up to ``wanted`` early sandboxes of ``isolation``; the others are closed, in the background (closing one
    that is still starting waits for its start)."""
    slots = _pop_early_slots()
    taken = [slot for slot in slots if slot.isolation == isolation][:wanted]
    unwanted = [slot for slot in slots if slot not in taken]
    if unwanted:
        threading.Thread(target=_retire_all, args=(unwanted,), daemon=True).start()
    return taken


def _retire_all(slots: list[Slot]) -> None:
    for slot in slots:
        slot.retire()


def _pop_early_slots() -> list[Slot]:
    with _early_lock:
        slots = list(_early_slots)
        _early_slots.clear()
    return slots


atexit.register(close_early_sandboxes)


def _start_in_background(slot: Slot) -> None:
    def start_quietly() -> None:
        with contextlib.suppress(Exception):  # a sandbox that cannot start says why when a job needs it
            slot.start()

    threading.Thread(target=start_quietly, name="wmtp-sandbox-start", daemon=True).start()

"""One worker slot: a long-lived sandbox whose server runs jobs one at a time (``inside/server.py``).

The slot starts its server on first use, sends it a job, and reads its answers: frames on a pipe
the slot opened itself, each read with a cap and against a deadline, so nothing the job does can
make the executor block, read a host file or hold more than a bounded amount of memory. A server
that dies, breaks the protocol or runs past a job's deadline is killed with everything in it and
started again for the next job. Closing the slot kills it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

from wmtp_cli.execution.inside import plain
from wmtp_cli.execution.isolation import ServerLaunch, server_launch

STDERR_BYTES = 64 << 10  # the server's own stderr kept (its start-up errors)


class _Spawner:
    """Starts every server from one thread that lives as long as the process.

    bwrap's ``--die-with-parent`` (and the server's own parent-death signal) fire when the *thread* that
    started the process ends, not the process: started from a pool thread, a slot would die with it.
    """

    def __init__(self):
        self._requests: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, launch: ServerLaunch) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="wmtp-sandbox-spawner", daemon=True)
                self._thread.start()
        answer: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((launch, answer))
        outcome = answer.get()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _serve(self) -> None:
        while True:
            launch, answer = self._requests.get()
            try:
                pipe = subprocess.PIPE
                process = subprocess.Popen(launch.argv, cwd="/", env=launch.env, stdin=pipe, stdout=pipe, stderr=pipe,
                                           start_new_session=True, close_fds=True)  # fmt: skip
                answer.put(process)
            except BaseException as exc:  # reported to the caller, not lost in this thread
                answer.put(exc)


_SPAWNER = _Spawner()


class SlotFailure(Exception):
    """The server could not finish a job: it died, broke the protocol, or ran past the deadline."""

    def __init__(self, why: str, timed_out: bool = False):
        super().__init__(why)
        self.timed_out = timed_out


class Slot:
    """A sandbox and its server, reused from job to job."""

    def __init__(self, isolation: str):
        self.isolation = isolation
        self._launch: ServerLaunch | None = None
        self._process: subprocess.Popen | None = None
        self._stderr = bytearray()
        self._stderr_thread: threading.Thread | None = None
        self._frames: plain.FrameReader | None = None  # the server's frames (its stdout, non-blocking)
        self._deadline = 0.0  # the running job's: waiting for the server past it fails the job
        self._lock = threading.Lock()
        self._starting = threading.RLock()  # one start at a time: a job's, or :meth:`start`'s ahead of the jobs
        self._retired = False  # :meth:`retire`: never started again

    def run(self, job: dict, deadline: float, cap: int) -> Iterator[list]:
        """The server's messages for ``job`` (JSON arrays: ``["test", i, outcome]``, then ``["result", summary]``),
        each at most ``cap`` bytes, all before ``deadline``.

        Raises :class:`SlotFailure` (and restarts the server for the next job) when it cannot finish.
        """
        process = self._ensure_started()
        frames = self._frames
        if not plain.write_frame(process.stdin.fileno(), plain.encode_json(job)):
            self._fail("the sandbox's server stopped before the job could be sent")
        self._deadline = deadline
        while True:
            try:
                payload = frames.next(cap)
            except plain.CutShort:
                payload = None
            except plain.BadMessage as exc:
                self._fail(f"the sandbox's server sent {exc}")
            if payload is None:
                self._fail(self._why_it_ended(process))
            try:
                message = plain.decode_json(payload)
            except plain.BadMessage as exc:
                self._fail(f"the sandbox's server sent a bad message ({exc})")
            if not isinstance(message, list) or not message:
                self._fail("the sandbox's server sent a message in the wrong shape")
            yield message
            if message[0] == "result":
                return

    def start(self) -> None:
        """Start the sandbox now, if it is not running (jobs start it when they need it otherwise)."""
        self._ensure_started()

    def retire(self) -> None:
        """Close the sandbox for good: a start that has not begun yet (a background one) starts nothing."""
        with self._starting:
            self._retired = True
        self.close()

    def close(self) -> None:
        """Kill the sandbox and everything in it (one being started is killed once it has started)."""
        with self._starting, self._lock:
            process, self._process = self._process, None
            launch, self._launch = self._launch, None
        if process is not None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            process.wait()
        if launch is not None and launch.work is not None:
            shutil.rmtree(launch.work, ignore_errors=True)

    # -----------------------------------------------------------------------------------------

    def _ensure_started(self) -> subprocess.Popen:
        with self._starting:
            return self._start_unless_running()

    def _start_unless_running(self) -> subprocess.Popen:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self._process
        if self._retired:
            raise SlotFailure("the sandbox was closed for good")
        self.close()
        launch = server_launch(self.isolation)
        process = _SPAWNER.start(launch)
        self._stderr = bytearray()
        out = process.stdout.fileno()
        os.set_blocking(out, False)
        self._frames = plain.FrameReader(out, wait=lambda: self._wait_for_server(out))
        self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(process,), daemon=True)
        self._stderr_thread.start()
        with self._lock:
            self._launch, self._process = launch, process
        return process

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        """Keep the last bytes of the server's stderr (why it failed to start, if it did)."""
        fd = process.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._stderr += chunk
            del self._stderr[: max(0, len(self._stderr) - STDERR_BYTES)]

    def _wait_for_server(self, out: int) -> None:
        """Until the server has written something on ``out``, or the job's deadline (then the job fails)."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._fail("the job ran past its overall time budget", timed_out=True)
        select.select([out], [], [], remaining)

    def _why_it_ended(self, process: subprocess.Popen) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1)
        lines = bytes(self._stderr).decode("utf-8", "replace").strip().splitlines()
        tail = f": {lines[-1]}" if lines else ""
        return f"the sandbox's server ended (exit status {process.returncode}){tail}"

    def _fail(self, why: str, timed_out: bool = False):
        self.close()
        raise SlotFailure(why, timed_out)

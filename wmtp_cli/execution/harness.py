"""The code that runs inside the sandbox: a supervisor that forks one worker per run or per test.

The executor runs this file (compiled once, passed as bytecode with ``python -s -S -B -c``) in the
job's working folder, so it is stdlib-only and never imported by the package; every program pays
for its imports, which is why it uses ``marshal`` and ``repr`` rather than ``json`` or ``signal``.
The supervisor:

1. keeps its stdout (the pipe the executor reads) as a private descriptor and points fd 1 at
   ``/dev/null``; reads the job from the file ``spec`` and deletes it at once, so that the
   executor's random marker is in no file, argument or environment variable a program can read;
2. compiles the program once, then forks a **worker** for the whole run (assert tests: setup,
   program and every statement share one namespace) or one worker **per test** (stdin/stdout
   tests: each a fresh fork of a process that never ran program code, so tests cannot leak state
   into each other and a program that ends its process with ``os._exit`` only ends its own test);
3. waits for each worker with a wall-clock limit (a ``pidfd`` where the kernel has one), kills
   its process group and any straggler when it ends (``kill(-1)`` inside the sandbox's own PID
   namespace; under ``isolation="none"`` the supervisor is a child subreaper and kills the orphans
   that land on it), and
4. writes one line, ``<marker> <repr of a dict>``, to the executor and exits.

A worker sets its own limits (address space, CPU seconds, process count, file size), drops root
to the sandbox's user id when the executor gives one, points fds 0/1/2 at files in the working
folder and runs the code in a fresh ``__main__`` module. Assert workers report each statement to
the supervisor through a pipe, every line prefixed by a per-worker random token, and end with a
``done`` line: a program that exits early (``sys.exit(0)``, ``os._exit(0)``, an ``excepthook`` that
exits 0) never writes ``done`` and cannot guess the token, so it does not pass. Stdio workers
finish as the interpreter would (join threads, run ``atexit`` handlers, flush ``sys.stdout``) and
exit with the status Python would have; the executor compares their output files with the expected
output, which never enters the sandbox.

Residual risk: the token (and the test statements) live in the worker's memory, so code that
deliberately walks the interpreter's frames or objects (``sys._getframe``, ``gc``) can find it.
The marker and token stop programs that end early or print fake results, not a program written
to attack this harness; that is what the process, namespace and privilege boundaries are for.
"""

import builtins
import marshal
import os
import resource
import select
import sys
import time

SPEC_FILE = "spec"
DETAIL_CHARS = 400  # characters of an exception message kept in a report
MESSAGE_BYTES = 1 << 20  # what a supervisor buffers from one worker; a flood beyond is dropped
HARNESS_FAILURE = 125  # exit status of a worker whose harness code (not the program) failed
SIGKILL = 9  # POSIX; not from ``signal``, whose import (enum, functools) costs more than the rest


class _Quitter:
    """``exit()`` and ``quit()``, which ``-S`` leaves out (they come from ``site``); same behaviour."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code=None):
        _quietly(lambda: sys.stdin.close())
        raise SystemExit(code)


def main():
    report_fd = os.dup(1)  # non-inheritable; workers close it too
    _point_fd(1, os.devnull, os.O_WRONLY)
    with open(SPEC_FILE, "rb") as f:
        spec = marshal.load(f)
    os.unlink(SPEC_FILE)
    marker = spec.pop("marker")
    _prepare_interpreter(spec)
    import gc

    gc.freeze()  # workers' gc.collect() then skips our objects (and copying their pages on write)
    summary = _supervise(spec)
    _write_all(report_fd, f"{marker} {summary!r}\n".encode())
    os._exit(0)


def _prepare_interpreter(spec):
    """What a plain ``python solution.py`` would have, minus the harness's own traces."""
    sys.path[:] = [p for p in sys.path if p]  # -c puts the working folder first
    sys.argv[:] = ["solution.py"]
    builtins.exit = _Quitter("exit")
    builtins.quit = _Quitter("quit")
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # the data's judges predate Python's 4300-digit default
    _limit(resource.RLIMIT_CORE, 0)  # SIGXCPU and friends dump core by default
    _limit(resource.RLIMIT_AS, spec["memory_bytes"])  # compile() too
    if spec["subreaper"]:
        _become_subreaper()


def _become_subreaper():
    """Orphans of a worker are re-parented to us rather than to init, so we can kill them."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _supervise(spec):
    try:
        code = compile(spec["program"], "solution.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return {"compile_error": _describe(exc), "tests": [], "run": None}
    if spec["kind"] == "assert":
        return _supervise_assert(spec, code)
    return _supervise_stdio(spec, code)


def _supervise_assert(spec, code):
    token = os.urandom(16).hex()
    outcome = _run_worker(spec, spec["time_limit"], lambda w: _assert_worker(spec, code, token, w))
    tests = [{"status": "not_run", "detail": ""} for _ in spec["statements"]]
    run = {key: outcome[key] for key in ("exit", "signal", "timeout", "seconds")}
    run.update(done=False, program_error=None, exception=None)
    for line in outcome["messages"]:
        head, _, rest = line.partition(" ")
        if head != token:
            continue  # the program wrote to our pipe; whatever it said does not count
        what, _, rest = rest.partition(" ")
        if what == "test":
            index, _, rest = rest.partition(" ")
            status, _, detail = rest.partition(" ")
            if index.isdigit() and int(index) < len(tests) and status in ("passed", "failed"):
                tests[int(index)] = {"status": status, "detail": detail}
        elif what == "program":
            run["program_error"] = rest
        elif what == "exception":
            run["exception"] = rest
        elif what == "done":
            run["done"] = True
    return {"compile_error": None, "tests": tests, "run": run}


def _supervise_stdio(spec, code):
    tests = []
    for index in range(spec["n_inputs"]):
        outcome = _run_worker(spec, spec["time_limit"], lambda w, i=index: _stdio_worker(spec, code, i, w))
        exception = next((m[len("exception ") :] for m in outcome["messages"] if m.startswith("exception ")), "")
        tests.append({key: outcome[key] for key in ("exit", "signal", "timeout", "seconds")} | {"exception": exception})
        if outcome["timeout"]:
            break  # a program too slow for one test fails anyway; spare the rest of the budget
    return {"compile_error": None, "tests": tests, "run": None}


# ---------------------------------------------------------------------------------------------
# Supervisor: fork, wait with a deadline, clean up.


def _run_worker(spec, limit_s, target):
    """Fork a worker running ``target(write_fd)``; its exit, signal, timeout, time and messages."""
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into supervisor code
        try:
            os.close(read_fd)
            _enter_worker(spec, limit_s, write_fd)
            target(write_fd)
        except BaseException as exc:
            _write_all(2, f"harness: {_describe(exc)}\n".encode(errors="replace"))
        os._exit(HARNESS_FAILURE)
    os.close(write_fd)
    _quietly(os.setpgid, pid, pid)  # also done by the worker; whichever runs first wins the race
    messages, status, timed_out = _wait(pid, read_fd, start + limit_s)
    seconds = time.monotonic() - start
    _clean_up(spec, pid)
    os.close(read_fd)
    code = os.waitstatus_to_exitcode(status)
    return {
        "exit": code if code >= 0 else None,
        "signal": -code if code < 0 else None,
        "timeout": timed_out,
        "seconds": round(seconds, 4),
        "messages": messages,
    }


def _wait(pid, read_fd, deadline):
    """Collect the worker's messages until it exits or the deadline passes (then kill it)."""
    os.set_blocking(read_fd, False)
    buffer = bytearray()
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfd (old kernel, not Linux): poll waitpid every few milliseconds
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    status, timed_out = None, False
    try:
        while status is None:
            if pidfd is None:
                done, wait_status = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = wait_status
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _kill_group(pid)
                break
            step = remaining if pidfd is not None else min(remaining, 0.005)
            for fd, _ in poller.poll(max(1, int(step * 1000))):
                if fd == read_fd:
                    if not _read_into(read_fd, buffer):
                        poller.unregister(read_fd)
                else:
                    done, wait_status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        status = wait_status
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if status is None:  # killed at the deadline
        status = _reap(pid)
    while _read_into(read_fd, buffer):  # what it wrote just before it ended
        pass
    lines = bytes(buffer).decode("utf-8", "replace").split("\n")
    return lines[:-1], status, timed_out


def _reap(pid):
    """The status of ``pid``; ``waitpid`` with ``WNOHANG`` above may already have reaped it."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _read_into(fd, buffer):
    """Read what is there; False at end of file or when nothing is ready."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if not chunk:
        return False
    if len(buffer) < MESSAGE_BYTES:
        buffer += chunk[: MESSAGE_BYTES - len(buffer)]
    return True


def _kill_group(pgid):
    _quietly(os.killpg, pgid, SIGKILL)


def _clean_up(spec, pid):
    """Kill whatever the worker left behind, so nothing runs into the next test or past the job."""
    _kill_group(pid)
    if spec["private_pid_ns"] and os.getpid() <= 2 and _pid_namespace() != spec["host_pid_ns"]:
        # Inside our own PID namespace (bwrap: init is 1, we are 2): -1 means every process of the
        # sandbox but init and us, which catches the ones that left the group with setsid().
        _quietly(os.kill, -1, SIGKILL)
    if spec["subreaper"]:
        _kill_orphans(pid)


def _pid_namespace():
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _kill_orphans(pgid):
    """As subreaper, kill and reap our children (orphans that left the worker's group) until none."""
    me = os.getpid()
    for _ in range(200):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
            has_children = True
        except ChildProcessError:
            has_children = False
        try:
            os.killpg(pgid, 0)
            group_alive = True
        except OSError:
            group_alive = False
        if not has_children and not group_alive:
            return
        if has_children:
            for child in _children_of(me):
                _quietly(os.kill, child, SIGKILL)
        _kill_group(pgid)
        time.sleep(0.001)


def _children_of(parent):
    children = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == parent:
            children.append(int(name))
    return children


# ---------------------------------------------------------------------------------------------
# Worker: limits, identity, standard streams, then the program.


def _enter_worker(spec, limit_s, keep_fd):
    os.setpgid(0, 0)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 65536)
    _limit(resource.RLIMIT_AS, spec["memory_bytes"])
    cpu = int(limit_s) + 1
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL past it
    _limit(resource.RLIMIT_FSIZE, spec["file_bytes"])
    if spec["nproc"] is not None:
        _limit(resource.RLIMIT_NPROC, spec["nproc"])
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
        if os.getuid() != spec["uid"] or os.geteuid() != spec["uid"]:
            raise RuntimeError("could not drop privileges")


def _limit(kind, soft, hard=None):
    """Lower a limit, never above the hard limit the caller already has (that would fail)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    _quietly(resource.setrlimit, kind, (soft, hard))  # macOS refuses RLIMIT_AS; the rest still apply


def _point_fd(fd, path, flags):
    new = os.open(path, flags, 0o644)
    if new != fd:
        os.dup2(new, fd)
        os.close(new)


def _standard_streams(stdin_path, stdout_path, stderr_path):
    """Fresh fds 0/1/2 and ``sys`` streams, configured as CPython configures them on POSIX."""
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    _point_fd(0, stdin_path, os.O_RDONLY)
    _point_fd(1, stdout_path, write)
    _point_fd(2, stderr_path, write)
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", newline="\n", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", newline="\n", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", newline="\n", closefd=False
    )
    return sys.stdout, sys.stderr


def _fresh_main():
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module.__dict__


def _assert_worker(spec, code, token, write_fd):
    def send(message):
        _write_all(write_fd, f"{token} {message}\n".encode("utf-8", "replace"))

    _standard_streams(os.devnull, "stdout", "stderr")
    namespace = _fresh_main()
    try:
        if spec["setup"]:
            exec(compile(spec["setup"], "setup.py", "exec", dont_inherit=True), namespace)
        exec(code, namespace)
    except SystemExit as exc:  # the program ended before any test ran
        _exit_like_python(exc)
    except BaseException as exc:
        send(f"exception {type(exc).__name__}")
        send(f"program {_describe(exc)}")
        _flush_streams()
        os._exit(1)
    for index, statement in enumerate(spec["statements"]):
        try:
            exec(compile(statement, f"test_{index}.py", "exec", dont_inherit=True), namespace)
        except SystemExit as exc:  # a test called code that ended the program
            _exit_like_python(exc)
        except BaseException as exc:
            send(f"test {index} failed {_describe(exc)}")
            if isinstance(exc, MemoryError):
                send("exception MemoryError")
        else:
            send(f"test {index} passed")
    _flush_streams()
    send("done")
    os._exit(0)


def _stdio_worker(spec, code, index, write_fd):
    streams = _standard_streams(f"in_{index}", f"out_{index}", f"err_{index}")
    namespace = _fresh_main()
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        _write_all(write_fd, f"exception {type(exc).__name__}\n".encode())
        _print_exception(exc)
        status = 1
    _finish_like_python(namespace, streams, status)


def _finish_like_python(namespace, streams, status):
    """CPython's exit: wait for non-daemon threads, run atexit handlers, flush ``sys.stdout``,
    then tear the module down (finalizers of files the program left open flush them)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    import atexit
    import gc

    atexit._run_exitfuncs()
    if not _flush_streams() and status == 0:
        status = 120  # CPython's status when flushing sys.stdout at exit fails
    sys.stdout, sys.stderr = streams  # as CPython restores sys.__stdout__ before clearing modules
    namespace.clear()
    gc.collect()
    for stream in streams:  # the originals may hold what the program wrote to sys.__stdout__
        _quietly(stream.flush)
    os._exit(status)


def _exit_like_python(exc):
    _flush_streams()
    os._exit(_exit_status(exc))


def _exit_status(exc):
    """The status ``python`` exits with for ``SystemExit(exc.code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    _quietly(lambda: print(code, file=sys.stderr))
    return 1


def _flush_streams():
    """CPython's ``flush_std_files``: flush ``sys.stdout`` and ``sys.stderr`` unless closed."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None or _is_closed(stream):
            continue
        try:
            stream.flush()
        except Exception:
            ok = False
    return ok


def _is_closed(stream):
    try:
        return bool(stream.closed)
    except Exception:
        return False


def _print_exception(exc):
    try:
        import traceback

        tb = exc.__traceback__
        tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # from the program's frame on
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
    except BaseException:
        _write_all(2, f"{_describe(exc)}\n".encode("utf-8", "replace"))


def _describe(exc):
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except BaseException:
        text = type(exc).__name__
    return text.replace("\n", " ")[:DETAIL_CHARS]


def _quietly(function, *args):
    """``function(*args)``, ignoring what it raises (not ``contextlib.suppress``: see imports)."""
    try:
        return function(*args)
    except Exception:
        return None


def _write_all(fd, data):
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return


if __name__ == "__main__":
    main()

"""The sandbox's server: one warm interpreter that runs many jobs, one at a time, each in fresh forks.

The executor starts one server per worker slot (under bubblewrap unless told otherwise) and sends it
jobs as frames on stdin; the server answers with frames on stdout (``plain.py``). Start-up (the
interpreter, the modules programs use) is paid once per slot. For each job the server

1. makes an empty working folder, owned by the job's user id where it can give one (running as
   root: a random unprivileged id per job);
2. assert tests: forks the program's process (``program_side.py``: limits, user id, folder; the
   program; then it answers calls) and runs the judge in the server's own process (``judge_side.py``:
   the tests, with stand-ins for the program's names); stdin/stdout tests: forks the program once per
   test, its stdin a file the server wrote, its stdout and stderr pipes the server reads;
3. watches the job: the judge's report, the program's output (past the cap the job is killed),
   the time limit, and the memory of the job's processes together (resident sets from ``/proc``,
   read every :data:`MEMORY_EVERY_S`), so forks cannot multiply the budget;
4. kills every process the job left, removes its folder and what it left in ``/tmp``, and answers.

The program reaches neither the server nor the judge: they hold the pipes to the executor and to
each other, they are non-dumpable (no ptrace, no ``/proc/<pid>/fd`` or ``mem``), and where the
server runs as root the program runs under a user id of its own.

Stdlib only; started as ``python -s -S -B -c "...; import server; server.main(CONFIG)"`` (CONFIG: a hex-encoded
frame): imported rather than run as a script, so that its cached bytecode is used (``isolation._BOOT``).
"""

import _signal
import contextlib
import gc
import os
import resource
import select
import sys
import time
import warnings

import judge_side
import plain
import program_side

JOB_CAP = 256 << 20  # bytes of one job from the executor (a program and its tests' inputs)
REPORT_CAP = 16 << 20  # bytes the judge may report for one job
STDERR_TAIL = 4096  # bytes of a program's stderr kept, from the end
MEMORY_EVERY_S = 0.02  # how often a running job's memory is summed
ALARM_GRACE_S = 0.5  # past a job's deadline, the alarm that stops trusted test code stuck in a loop
SIGKILL = 9
PROGRAMS_KEPT = 8  # compiled programs kept for repeats (a problem's samples come together)
HARNESS_FAILURE = 125  # exit status of a child whose server code (not the program) failed
PAGE = os.sysconf("SC_PAGE_SIZE")
_CPUCLOCK_SCHED = 2  # the kernel's process CPU clock ids: (~pid << 3) | CPUCLOCK_SCHED
UID_RANGE = (0x7000_0000, 0x7100_0000)  # per-job user ids when root: far above any real user
HOST_SHARED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")  # without bubblewrap, where any user may leave files
LIMITS = (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC)
# Modules the benchmarks' programs import most (HumanEval, MBPP, CodeContests, tiny-code), loaded once here
# so that every fork starts with them; each more makes every fork a little dearer, so only these. Not
# ``threading``: its after-fork hook (rebuilding the thread table, in Python) would run in every fork, about 0.3 ms
# of a fork and exit's 0.5 ms, where a program that imports it pays 2 ms once. ``random`` is loaded without its
# hook (a reseed, 0.1 ms a fork): a program that names it is reseeded instead (:func:`_reseed_random`).
WARM_MODULES = (
    "array", "bisect", "collections", "copy", "functools", "heapq", "io", "itertools", "math", "operator", "re",
    "string", "time", "types", "typing",
)  # fmt: skip


def main(config_hex):
    """Serve jobs from stdin until it closes; ``config_hex``: the sandbox's settings, a hex-encoded frame."""
    config = plain.decode(bytes.fromhex(config_hex))
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # nothing the server's own code prints may mix into the frames
    os.close(null)
    server = Server(config)
    jobs = plain.FrameReader(0, JOB_CAP)
    while True:
        try:
            frame = jobs.next()
        except plain.BadMessage:
            return
        if frame is None:
            return
        for message in server.run(plain.decode_json(frame)):
            if not plain.write_frame(out_fd, plain.encode_json(message)):
                return


class Server:
    """Runs jobs (see the module docstring); ``config`` says what this sandbox allows."""

    def __init__(self, config):
        self.work = config["work"]  # where job folders go (a size-limited tmpfs under bubblewrap)
        self.tmp = config["tmp"]  # the sandbox's own /tmp, emptied after each job; None when it is the host's
        self.switch_users = config["switch_users"]  # root: each job gets user ids of its own
        self.own_pid_namespace = config["own_pid_namespace"]
        self.me = os.getpid()
        self.count = 0
        self.programs = {}  # program text -> code object (immutable, so forks may share it)
        self.folder = os.path.join(self.work, "job")  # every job's working folder, emptied between jobs
        self.inputs = os.path.join(self.work, "in")  # the stdin of each stdio test; the server's
        os.mkdir(self.folder, 0o700)
        os.mkdir(self.inputs, 0o755)
        _set_dumpable(False)
        _die_with_parent()
        if not self.own_pid_namespace and not self.switch_users:
            _become_subreaper()  # orphans of a job come back to us, so we can kill them
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(0)  # the data's judges predate Python's 4300-digit default
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
        _limit(resource.RLIMIT_CORE, 0)
        self.hard_limits = {kind: resource.getrlimit(kind)[1] for kind in LIMITS}
        # What every job's process starts with, set once here rather than in each fork (a fork's first touches
        # of the interpreter's objects are page faults: the less it does before the program, the faster).
        os.environ.clear()
        os.environ.update(config["env"])
        # Every job's folder is the same path (emptied between jobs): the forks' home, and without a private /tmp,
        # where their temporary files go.
        os.environ["HOME"] = self.folder
        if self.tmp is None:
            os.environ["TMPDIR"] = self.folder
        program_side.standard_streams()
        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):
                __import__(name)
        _import_without_fork_hooks("random")  # the judge seeds it for the tests; programs reseed it
        program_side.prepare_interpreter()
        gc.freeze()  # forks then skip the server's objects in gc.collect() (and copying their pages)

    def run(self, job):
        """Messages for the executor: ``("test", i, outcome)`` per stdio test, then ``("result", summary)``."""
        self.count += 1
        started = time.monotonic()
        try:
            code = self._compiled(job["program"])
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
            yield "result", {"compile_error": plain.describe(exc), "seconds": time.monotonic() - started}
            return
        uid = _random_id() if self.switch_users else None
        folder = self.folder
        if uid is not None:
            os.chown(folder, uid, uid)
        os.chmod(folder, 0o700)
        try:
            if job["kind"] == "assert":
                summary = self._assert_job(job, code, folder, uid)
            else:
                summary = yield from self._stdio_job(job, code, folder, uid)
            summary["compile_error"] = None
            summary["seconds"] = time.monotonic() - started
            yield "result", summary
        finally:  # after the result is sent: the executor reads it while the job is taken down
            self._clean_up(folder, uid)

    def _compiled(self, program):
        """The program's code object; the same text (a sample a model repeats) is compiled once while it is among
        the last :data:`PROGRAMS_KEPT` (a problem's samples come together; more would only grow every fork)."""
        code = self.programs.get(program)
        if code is None:
            if len(self.programs) >= PROGRAMS_KEPT:
                del self.programs[next(iter(self.programs))]
            with warnings.catch_warnings():  # a program's own syntax warnings would only fill our stderr
                warnings.simplefilter("ignore")
                code = self.programs[program] = compile(program, "solution.py", "exec", dont_inherit=True)
        return code

    # -----------------------------------------------------------------------------------------
    # The two kinds of jobs.

    def _assert_job(self, job, code, folder, uid):
        requests_r, requests_w = os.pipe()  # judge -> program
        replies_r, replies_w = os.pipe()  # program -> judge
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)

        def program():
            program_side.connect_streams(null, out_w, err_w)
            program_side.serve_calls(code, requests_r, replies_w, job["entry_points"] or ())

        pid = self._fork(job, uid, program, (requests_r, replies_w, out_w, err_w, null))
        for fd in (requests_r, replies_w, out_w, err_w, null):
            os.close(fd)
        watch = Watch(self, job, uid, pid)
        watch.read(out_r, cap=job["max_output"])
        watch.read(err_r, tail=STDERR_TAIL)
        deadline = time.monotonic() + job["time_limit"]
        for fd in (requests_w, replies_r):
            os.set_blocking(fd, False)
        link = judge_side.Link(requests_w, replies_r, lambda fd, write: watch.wait_for(fd, write, deadline))
        report = []
        try:
            with _alarm(deadline + ALARM_GRACE_S):  # a backstop for trusted test code that never returns
                report = judge_side.judge(job, link)
        except judge_side.JudgeStop:
            watch.timed_out = watch.timed_out or not (watch.over_memory or watch.over_output)
        watch.ended = time.monotonic()
        # Collected before anything else is done: what the server writes while the killed process still shares its
        # pages would be copied first. When the judge finished, how it ended (killed now) says nothing; otherwise
        # its exit status or signal is part of the verdict.
        watch.finish()
        for fd in (requests_w, replies_r):
            os.close(fd)
        exit_code, killed_by = _exit_and_signal(watch.statuses.get(pid))
        run = {"timeout": watch.timed_out, "memory": watch.over_memory, "output_over": watch.over_output,
               "exit": exit_code, "signal": killed_by, "stderr": watch.text(err_r),
               "cpu_seconds": watch.cpu}  # fmt: skip
        return {"run": run, "judge": report}

    def _stdio_job(self, job, code, folder, uid):
        inputs = self.inputs  # the server's: the program reads its input, and nothing it does changes one
        try:
            for index, text in enumerate(job["inputs"]):
                path = os.path.join(inputs, str(index))
                with open(path, "wb") as f:
                    f.write(text.encode("utf-8", "surrogateescape"))
                os.chmod(path, 0o444)
                outcome = self._stdio_test(job, code, folder, uid, path)
                yield "test", index, outcome
                if outcome["timeout"]:
                    break  # a program too slow for one test fails anyway; spare the rest of the budget
        finally:
            _remove_contents(inputs)
        return {}

    def _stdio_test(self, job, code, folder, uid, input_path):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin = os.open(input_path, os.O_RDONLY)

        def program():
            program_side.connect_streams(stdin, out_w, err_w)
            program_side.run_once(code)

        pid = self._fork(job, uid, program, (stdin, out_w, err_w))
        for fd in (stdin, out_w, err_w):
            os.close(fd)
        watch = Watch(self, job, uid, pid)
        watch.read(out_r, cap=job["max_output"])
        watch.read(err_r, tail=STDERR_TAIL)
        watch.wait_exit(time.monotonic() + job["time_limit"])
        watch.finish()
        exit_code, killed_by = _exit_and_signal(watch.statuses.get(pid))
        return {
            "exit": exit_code, "signal": killed_by, "timeout": watch.timed_out, "memory": watch.over_memory,
            "output_over": watch.over_output, "seconds": watch.seconds(),
            "stdout": watch.data(out_r).decode("latin-1"), "stderr": watch.text(err_r), "cpu_seconds": watch.cpu,
        }  # fmt: skip

    # -----------------------------------------------------------------------------------------
    # Processes.

    def _fork(self, job, uid, target, keep):
        """A child in its own process group, holding only ``keep`` of our descriptors, with its limits and user
        id, running ``target``; it never returns into server code."""
        # Worked out before the fork: every object the child makes or touches is a page it copies first.
        limits = self._limits(job)
        reseed = "random" in job["program"]
        pid = os.fork()
        if pid:
            with contextlib.suppress(OSError):  # the child may have done it first
                os.setpgid(pid, pid)
            return pid
        try:
            os.setpgid(0, 0)
            _close_all_but(keep)
            for kind, soft_and_hard in limits:
                try:  # noqa: SIM105 (no context manager: each object made here is a page copied)
                    resource.setrlimit(kind, soft_and_hard)
                except (ValueError, OSError):
                    pass
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                if os.getuid() != uid or os.geteuid() != uid:
                    raise RuntimeError("could not drop privileges")
            os.chdir(self.folder)
            gc.freeze()  # the program's collections skip the server's objects: it would only copy their pages
            if reseed:
                _reseed_random()
            target()
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"harness: {plain.describe(exc)}\n".encode("utf-8", "replace"))
        os._exit(HARNESS_FAILURE)

    def _limits(self, job):
        """``(kind, (soft, hard))`` of each resource limit a job's process gets."""
        cpu = int(job["time_limit"]) + 1
        limits = {resource.RLIMIT_AS: (job["memory_bytes"],) * 2, resource.RLIMIT_FSIZE: (job["file_bytes"],) * 2,
                  resource.RLIMIT_CPU: (cpu, cpu + 1)}  # SIGXCPU at the soft limit, SIGKILL past it  # fmt: skip
        if job["nproc"] is not None:
            limits[resource.RLIMIT_NPROC] = (job["nproc"],) * 2
        return [(kind, _clamped(soft, hard, self.hard_limits[kind])) for kind, (soft, hard) in limits.items()]

    def job_pids(self, uid, pids):
        """The job's live processes: ``pids``, and every other one that can be told to be the job's (its user
        id's; or, in our own PID namespace, everything but init and us)."""
        found = set(pids)
        if uid is None and not self.own_pid_namespace:
            return found
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (1, self.me):
                continue
            try:
                if self.own_pid_namespace or os.stat(f"/proc/{name}").st_uid == uid:
                    found.add(int(name))
            except OSError:
                pass
        return found

    def kill_job(self, uid):
        """Kill every process the job has left (its program's process is collected already), and collect them."""
        if self.own_pid_namespace:
            with contextlib.suppress(OSError):
                os.kill(-1, SIGKILL)  # everything in our namespace but init and us: setsid() or not
        elif uid is not None:
            _as_user(uid, _kill_all_of_mine)  # kill(-1) as the job's user reaches exactly its processes
        else:
            _kill_children(self.me)  # as subreaper, orphans that left the group are our children
        _reap_all()

    def _clean_up(self, folder, uid):
        """Remove the job's folder and what it left in /tmp (its processes are gone already).

        As root the server may remove whatever the job's user made (root's own privileges, or under
        bubblewrap the capabilities it keeps for this); otherwise the job ran as the server's own user.
        """
        _reap_all()
        try:
            os.chmod(folder, 0o700)  # whatever mode the program left on it
        except FileNotFoundError:  # a program running as our own user id removed or renamed it
            os.mkdir(folder, 0o700)
        _remove_contents(folder)
        if self.tmp is not None:
            _remove_contents(self.tmp)
        elif uid is not None:  # the host's shared folders: what the job's own user id left there
            for shared in HOST_SHARED_FOLDERS:
                _remove_contents(shared, owner=uid)


class Watch:
    """A running job seen from the server: the pipes it writes (read as data arrives), its clock, its memory."""

    def __init__(self, server, job, uid, pid):
        self.server, self.job, self.uid, self.pid = server, job, uid, pid
        self.statuses = {}
        self.started = time.monotonic()
        self.ended = None
        self.next_memory = self.started + MEMORY_EVERY_S
        self.poller = select.poll()
        self.buffers, self.caps, self.tails, self.open = {}, {}, {}, set()
        self.pidfd = None
        try:
            self.pidfd = os.pidfd_open(pid)
            self.poller.register(self.pidfd, select.POLLIN)
        except (AttributeError, OSError):
            pass  # no pidfd: the exit is noticed at the next wake-up (at most 1 ms later)
        self.timed_out = self.over_memory = self.over_output = False
        self.cpu = 0.0  # CPU seconds of the program's process (its threads; not its children)

    def read(self, fd, cap=None, tail=None):
        """Collect what arrives on ``fd``: all of it up to ``cap`` (more breaks the output limit), or its last
        ``tail`` bytes."""
        os.set_blocking(fd, False)
        self.buffers[fd] = bytearray()
        self.caps[fd], self.tails[fd] = cap, tail
        self.open.add(fd)
        self.poller.register(fd, select.POLLIN)

    def wait_exit(self, deadline):
        """Until the program's process has ended, the deadline, or a broken limit."""
        try:
            while not self._exited():
                self._step(deadline, None, False)
        except judge_side.JudgeStop:
            pass
        self.ended = time.monotonic()

    def wait_for(self, fd, write, deadline):
        """Until ``fd`` is ready to read (or ``write``), watching the job meanwhile; :class:`JudgeStop` when the
        job breaks a limit (the judge stops there)."""
        self.poller.register(fd, select.POLLOUT if write else select.POLLIN)
        try:
            while not self._step(deadline, fd, write):
                pass
        finally:
            self.poller.unregister(fd)

    def _step(self, deadline, fd, write):
        """One wait for something to happen; True when ``fd`` is ready."""
        now = time.monotonic()
        if now >= deadline:
            self.timed_out = True
            raise judge_side.JudgeStop("time")
        if now >= self.next_memory:
            if self._memory() > self.job["memory_bytes"]:
                self.over_memory = True
                raise judge_side.JudgeStop("memory")
            self.next_memory = time.monotonic() + MEMORY_EVERY_S
        timeout = min(deadline, self.next_memory) - now
        if self.pidfd is None:
            timeout = min(timeout, 0.001)
        ready = False
        for event_fd, _ in self.poller.poll(int(timeout * 1000) + 1):
            if event_fd == fd:
                ready = True
            elif event_fd == self.pidfd:
                self.poller.unregister(self.pidfd)
                self._exited()
            elif event_fd in self.open:
                self._pull(event_fd)
        if self.over_output:
            raise judge_side.JudgeStop("output")
        return ready

    def _exited(self):
        if self.pid not in self.statuses:
            try:
                done, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                done, status, usage = self.pid, 0, None
            if done:
                self.statuses[self.pid] = status
                if usage is not None:
                    self.cpu = usage.ru_utime + usage.ru_stime
        return self.pid in self.statuses

    def finish(self):
        """Kill the job, wait for the program's process, read what is left in the pipes, close them."""
        if self.pid not in self.statuses:
            self.cpu = _process_cpu(self.pid)  # before it is killed: what its own computation took
            for kill in (os.kill, os.killpg):  # the process, whatever group it moved to, and its group
                with contextlib.suppress(OSError):
                    kill(self.pid, SIGKILL)
            try:  # first, so that its status is not taken by the clean-up's collection of everything else
                self.statuses[self.pid] = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:
                self.statuses[self.pid] = 0
        self.server.kill_job(self.uid)
        for fd in list(self.open):
            while self._pull(fd):
                pass
        for fd in [*self.buffers, *([self.pidfd] if self.pidfd is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _pull(self, fd):
        """Read what is there; False at end of file or when nothing is ready."""
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.poller.unregister(fd)
            self.open.discard(fd)
            return False
        buffer, cap, tail = self.buffers[fd], self.caps[fd], self.tails[fd]
        buffer += chunk
        if tail is not None and len(buffer) > tail:
            del buffer[: len(buffer) - tail]
        elif cap is not None and len(buffer) > cap:
            del buffer[cap + 1 :]  # one byte over the cap shows that the program went past it
            self.over_output = True
        return True

    def _memory(self):
        """Resident bytes of the job's processes together."""
        total = 0
        running = () if self.pid in self.statuses else (self.pid,)
        for pid in self.server.job_pids(self.uid, running):
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                pass
        return total

    def seconds(self):
        return round((self.ended or time.monotonic()) - self.started, 4)

    def data(self, fd):
        return bytes(self.buffers[fd])

    def text(self, fd):
        return self.data(fd).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Small helpers.


def _import_without_fork_hooks(name):
    """Import module ``name`` with ``os.register_at_fork`` a no-op: its after-fork hooks would run in every fork."""
    register = os.register_at_fork
    os.register_at_fork = lambda **hooks: None
    try:
        __import__(name)
    finally:
        os.register_at_fork = register


def _reseed_random():
    """What ``random``'s after-fork hook does (we loaded it without): a fresh seed, as a new ``python`` would draw."""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()


def _set_dumpable(value):
    """prctl(PR_SET_DUMPABLE): a non-dumpable process cannot be ptraced, nor its /proc entries opened, by
    processes of its own user."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(value), 0, 0, 0)
    except Exception:
        pass


def _die_with_parent():
    """SIGKILL when the process that started us ends (bubblewrap does the same for its sandbox)."""
    try:
        import ctypes

        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it ended before the signal was set
            os._exit(1)
    except Exception:
        pass


def _process_cpu(pid):
    """CPU seconds ``pid`` has used so far (its process CPU clock), or 0.0 where that cannot be read.

    The clock's id is what glibc's ``clock_getcpuclockid`` computes on Linux (the kernel's process CPU clock of
    ``pid``, all its threads), read with :func:`time.clock_gettime` rather than through ctypes.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | _CPUCLOCK_SCHED)
    except (OSError, OverflowError):
        return 0.0


def _become_subreaper():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _random_id():
    """An unprivileged user id for one job's program."""
    low, high = UID_RANGE
    return low + int.from_bytes(os.urandom(4), "big") % (high - low)


@contextlib.contextmanager
def _alarm(deadline):
    """SIGALRM at ``deadline`` raises :class:`JudgeStop` in whatever the server is running then."""

    def stop(signum, frame):
        raise judge_side.JudgeStop("time")

    # ``_signal``: the C functions ``signal`` wraps; the wrappers' enum conversions cost more than the rest of this.
    previous = _signal.signal(_signal.SIGALRM, stop)
    _signal.setitimer(_signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))
    try:
        yield
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGALRM, previous)


def _as_user(uid, action):
    """Run ``action`` in a child that has taken ``uid``; wait for it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def _kill_all_of_mine():
    for _ in range(3):
        try:
            os.kill(-1, SIGKILL)
        except OSError:
            return


def _kill_children(parent):
    for _ in range(100):
        children = _children_of(parent)
        if not children:
            return
        for child in children:
            with contextlib.suppress(OSError):
                os.kill(child, SIGKILL)
        _reap_all()


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


def _reap_all():
    """Collect every exited child (and orphans re-parented to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _frames(data):
    """Split a stream of length-prefixed frames (a cut-off last one is dropped)."""
    frames, at = [], 0
    while at + plain.HEADER <= len(data):
        size = int.from_bytes(data[at : at + plain.HEADER], "big")
        if at + plain.HEADER + size > len(data):
            break
        frames.append(data[at + plain.HEADER : at + plain.HEADER + size])
        at += plain.HEADER + size
    return frames


def _exit_and_signal(status):
    if status is None:
        return None, None
    code = os.waitstatus_to_exitcode(status)
    return (code, None) if code >= 0 else (None, -code)


def _close_all_but(keep):
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 65536)


def _limit(kind, soft, hard=None):
    """Lower a limit, never above the hard limit already there (that would fail)."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(kind, _clamped(soft, soft if hard is None else hard, resource.getrlimit(kind)[1]))


def _clamped(soft, hard, ceiling):
    """``(soft, hard)`` lowered to ``ceiling``, the hard limit a process was given: asking for more would fail."""
    if ceiling == resource.RLIM_INFINITY:
        return soft, hard
    return min(soft, ceiling), min(hard, ceiling)


def _remove(path):
    """Delete a file or folder whatever modes were left on it (as far as our user id may)."""
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    _remove_contents(path)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _remove_contents(folder, owner=None):
    """Empty ``folder`` of what our user id may remove (only what ``owner`` owns, when given); the folder stays."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if owner is not None and os.lstat(path).st_uid != owner:
                continue
        except OSError:
            continue
        _remove(path)


if __name__ == "__main__":
    main(sys.argv[1])

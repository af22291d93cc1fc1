"""How one job's harness process is started and contained: bubblewrap or plain limits.

Two isolations, chosen once per :class:`~wmtp_cli.execution.executor.Executor`:

- ``"bwrap"`` (bubblewrap): the harness runs in fresh PID, network, IPC and UTS namespaces, sees a
  read-only ``/usr`` (and ``/bin``, ``/lib*``), the Python installation, a few files of ``/etc``, a
  fresh ``/proc``, a minimal ``/dev``, a small private ``/tmp`` and its working folder (read-write,
  as ``/sandbox``); nothing else of the machine (home folders, credentials, the repository) is
  there. No network: even loopback is the namespace's own. ``--die-with-parent`` and the PID
  namespace mean that when the job ends, every process it started ends with it, including ones
  that called ``setsid()``.
- ``"none"``: resource limits, its own session and process group, a scrubbed environment and a
  private working folder only; the harness becomes a child subreaper so it can kill orphans.
  Programs can read and write what the user running the executor can.

In both, when the executor runs as root (containers, CI), each job's worker drops to its own
unprivileged user id (a random id in ``UID_RANGE``, chosen per job): root ignores
``RLIMIT_NPROC`` and could kill or delete anything, and a user namespace does not help, since
bubblewrap maps root to root. With a per-job id the process-count limit counts that job's
processes only. Under ``"none"`` this needs the Python installation to be readable by other users
(a pyenv under ``/root`` is not), so there it is done only when it is.

The environment is rebuilt from nothing: ``PATH``, ``LANG``/``LC_ALL``, ``HOME`` and ``TMPDIR`` (the
sandbox's own folders), ``PYTHONHASHSEED=0`` (set iteration order, and so output, is the same
on every run) and ``PYTHONDONTWRITEBYTECODE``. No token or secret of the caller is passed on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wmtp_cli.errors import UsageError

logger = logging.getLogger(__name__)

ISOLATIONS = ("auto", "bwrap", "none")
SANDBOX_DIR = "/sandbox"  # where the working folder appears under bwrap
SANDBOX_TMP_BYTES = 64 * 2**20  # the private /tmp is memory; keep it small
UID_RANGE = (0x7000_0000, 0x7100_0000)  # per-job user ids when root; above systemd-nspawn's ranges
HARNESS_SOURCE = Path(__file__).with_name("harness.py").read_text(encoding="utf-8")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group")
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PROBE = """
import os, sys
uid = int(sys.argv[1])
if uid >= 0:
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
import bisect, heapq
open("probe", "w").write("x"); open("/tmp/probe", "w").write("x")
print("ok")
"""


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one job's harness, and what the harness may rely on."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int | None  # the user id the worker drops to; None: it keeps the caller's
    nproc_enforced: bool  # whether RLIMIT_NPROC would count this job's processes only
    private_pid_ns: bool
    subreaper: bool


def python_executable() -> str:
    """The real interpreter (not a venv link or a shim): the sandbox runs stdlib-only code."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@functools.lru_cache(maxsize=1)
def _harness_bootstrap() -> str:
    """``-c`` code that runs the harness from bytecode compiled here once (saves ~10 ms a program).

    The sandbox runs the very interpreter this process runs on, so the marshal format matches.
    """
    code = marshal.dumps(compile(HARNESS_SOURCE, "wmtp-harness", "exec", dont_inherit=True))
    return f"import marshal;exec(marshal.loads(bytes.fromhex('{code.hex()}')))"


def harness_argv() -> list[str]:
    # -S: no site (saves ~60 ms a program and keeps site-packages out); -s: no user site;
    # -B: no .pyc writes. Not -E/-I: the environment is ours alone, and PYTHONHASHSEED must work.
    return [python_executable(), "-s", "-S", "-B", "-c", _harness_bootstrap()]


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def scrubbed_env(home: str, tmp: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def bwrap_available() -> bool:
    """Whether bubblewrap is installed and can start a sandbox here (user namespaces allowed)."""
    return _bwrap_problem() is None


@functools.lru_cache(maxsize=1)
def _bwrap_features() -> frozenset[str]:
    """Options of the installed bwrap that older releases lack (``--perms`` 0.5, ``--size`` 0.7)."""
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(flag for flag in ("--perms", "--size") if flag in text)


@functools.lru_cache(maxsize=1)
def _bwrap_problem() -> str | None:
    """None when a probe program runs in the sandbox exactly as jobs will; else why not."""
    if sys.platform != "linux":
        return "bubblewrap needs Linux"
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="wmtp-probe-") as folder:
        sandbox = Sandbox("bwrap")
        probe = [python_executable(), "-s", "-S", "-c", _PROBE]
        launch = sandbox.launch(Path(folder), probe)
        hand_over(Path(folder), launch)
        argv = [*launch.argv, str(launch.uid if launch.uid is not None else -1)]
        try:
            result = subprocess.run(argv, env=launch.env, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap did not run: {exc}"
    if result.returncode != 0 or result.stdout.strip() != "ok":
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        return f"bwrap could not start a sandbox here: {reason}"
    return None


_fallback_warned = False


def resolve_isolation(isolation: str) -> str:
    """``"auto"`` becomes ``"bwrap"`` when it works here, else ``"none"`` (with one warning a process)."""
    global _fallback_warned
    if isolation not in ISOLATIONS:
        raise UsageError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
    if isolation == "none":
        return "none"
    problem = _bwrap_problem()
    if problem is None:
        return "bwrap"
    if isolation == "bwrap":
        raise UsageError(f"isolation='bwrap' was asked for, but {problem}; use isolation='auto' or 'none'")
    if not _fallback_warned:
        _fallback_warned = True
        logger.warning(
            "%s; running generated code with resource limits only (no filesystem or network "
            "isolation). Install bubblewrap for a real sandbox.",
            problem,
        )
    return "none"


class Sandbox:
    """Builds the :class:`Launch` of each job for one isolation (``"bwrap"`` or ``"none"``)."""

    def __init__(self, kind: str):
        if kind not in ("bwrap", "none"):
            raise ValueError(f"a sandbox is 'bwrap' or 'none', not {kind!r}")
        self.kind = kind
        self.root = running_as_root()
        if kind == "bwrap":
            self.features = _bwrap_features()
            self.drop_privileges = self.root and "--perms" in self.features
        else:
            self.features = frozenset()
            self.drop_privileges = self.root and _world_reachable_python()

    def launch(self, workdir: Path, command: list[str] | None = None) -> Launch:
        """How to start ``command`` (the harness by default) for the job in ``workdir``."""
        command = command or harness_argv()
        uid = random.randrange(*UID_RANGE) if self.drop_privileges else None
        if self.kind == "none":
            return Launch(
                argv=command,
                env=scrubbed_env(str(workdir), str(workdir)),
                cwd=str(workdir),
                uid=uid,
                nproc_enforced=uid is not None,  # a user's own limit would count all their processes
                private_pid_ns=False,
                subreaper=sys.platform == "linux",
            )
        return Launch(
            argv=[*self._bwrap_args(workdir), *command],
            env=scrubbed_env(SANDBOX_DIR, "/tmp"),
            cwd=str(workdir),
            uid=uid,
            nproc_enforced=uid is not None or not self.root,  # non-root: counted in its user namespace
            private_pid_ns=True,
            subreaper=False,
        )

    def _bwrap_args(self, workdir: Path) -> list[str]:
        args = ["bwrap"]
        if self.root:
            # No user namespace: it would map root to root and keep it root. The supervisor keeps
            # just what it needs to drop each worker to its own user id and to kill it.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
            args += ["--cap-drop", "ALL"]
            if self.drop_privileges:
                args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
        else:
            args += ["--unshare-all"]
        args += ["--die-with-parent", "--new-session", *_filesystem_args(self.features)]
        args += ["--bind", str(workdir), SANDBOX_DIR, "--chdir", SANDBOX_DIR]
        return args


@functools.lru_cache(maxsize=4)
def _filesystem_args(features: frozenset[str]) -> tuple[str, ...]:
    """The read-only system the sandbox sees: /usr, /bin and /lib*, the Python install, bits of /etc."""
    perms = "--perms" in features
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[str] = set()
    for folder in _python_folders():
        # Folders bwrap makes on the way keep their host modes (/root is 0700); a worker that has
        # dropped to its own user id must be able to walk through them.
        for parent in reversed(Path(folder).parents):
            if str(parent) != "/" and str(parent) not in made and perms:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", folder, folder]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if perms:
        args += ["--perms", "1777"]
    if "--size" in features:
        args += ["--size", str(SANDBOX_TMP_BYTES)]
    args += ["--tmpfs", "/tmp"]
    return tuple(args)


def _python_folders() -> list[str]:
    """The installation the interpreter needs, outside /usr (pyenv, conda, uv, a venv's base)."""
    candidates = {
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.base_exec_prefix),
        os.path.dirname(os.path.dirname(python_executable())),
    }
    folders = sorted(p for p in candidates if not _under(p, "/usr") and p != "/")
    return [p for p in folders if not any(q != p and _under(p, q) for q in folders)]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def _world_reachable_python() -> bool:
    """Whether a process of another user can run this interpreter and read its standard library."""
    temp = Path(os.path.realpath(tempfile.gettempdir()))
    stdlib = Path(os.path.realpath(os.__file__))  # the standard library is where ``os`` came from
    for path in (Path(python_executable()), stdlib, temp / "job"):
        for folder in path.parents:
            try:
                if not os.stat(folder).st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    return True


def hand_over(workdir: Path, launch: Launch) -> None:
    """Let the job's worker (its own user id) and its supervisor (root, no capabilities) use the folder."""
    if launch.uid is not None:
        os.chown(workdir, launch.uid, 0)
        os.chmod(workdir, 0o770)


def kill_job_processes(pid: int, *, whole_session: bool) -> None:
    """SIGKILL the job's process group; with ``whole_session``, also anything left in its session.

    Under bwrap, killing the group kills bwrap, whose PID namespace takes every process of the job
    with it. Under ``"none"`` the harness kills its own stragglers; when it could not (something
    killed it), the session scan catches workers that changed process group (not ones that left
    the session: that is what the PID namespace of bwrap is for).
    """
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if whole_session and sys.platform == "linux":
        for _ in range(3):
            found = [p for p in _pids_in_session(pid) if p != os.getpid()]
            if not found:
                break
            for other in found:
                with contextlib.suppress(OSError):
                    os.kill(other, signal.SIGKILL)


def _pids_in_session(session: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and session in (int(fields[2]), int(fields[3])):  # process group, session
            pids.append(int(name))
    return pids


def remove_tree(folder: Path) -> None:
    """Delete a working folder whatever modes the program left in it."""
    shutil.rmtree(folder, ignore_errors=True)
    if not os.path.lexists(folder):
        return
    with contextlib.suppress(OSError):  # a folder the program made unreadable (root does not care)
        os.chmod(folder, 0o700)
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o700)
    shutil.rmtree(folder, ignore_errors=True)

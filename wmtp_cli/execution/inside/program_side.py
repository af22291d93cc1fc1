"""The judged program's own process: run it as ``python solution.py`` would, then answer calls.

Forked by the server for each job (assert tests) or each test (stdin/stdout tests), after the
server has set its limits, its user id, its working folder and its standard streams. Nothing here
is trusted: the program can change every function of this module once it runs. That is why the
verdict is never decided here. For assert tests this process only *answers*: the judge (another
process, another user id where the server can give one) runs the tests and calls the program's
functions through a pipe, receiving plain data (``plain.py``) and nothing else.

Stdlib only.
"""

import builtins
import contextlib
import os
import sys

import plain

REQUEST_CAP = 64 << 20  # bytes of one call's arguments from the judge


class _Quitter:
    """``exit()`` and ``quit()``, which ``-S`` leaves out (they come from ``site``); same behaviour."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code=None):
        with contextlib.suppress(Exception):
            sys.stdin.close()
        raise SystemExit(code)


def prepare_interpreter():
    """What a plain ``python solution.py`` has that ``-S`` and our own start-up left out or added."""
    sys.argv[:] = ["solution.py"]
    builtins.exit = _Quitter("exit")
    builtins.quit = _Quitter("quit")


def standard_streams():
    """``sys`` streams on fds 0/1/2, configured as CPython configures them (the server makes them once)."""
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", newline="\n", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", newline="\n", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", newline="\n", closefd=False
    )
    return sys.stdout, sys.stderr


def connect_streams(stdin_fd, stdout_fd, stderr_fd):
    """Fds 0/1/2 from the given descriptors: what the streams of :func:`standard_streams` write to and read from."""
    for target, fd in ((0, stdin_fd), (1, stdout_fd), (2, stderr_fd)):
        if fd != target:
            os.dup2(fd, target)


def fresh_main():
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module.__dict__


# ---------------------------------------------------------------------------------------------
# Assert tests: run the program, then answer the judge's calls.


def serve_calls(code, requests_fd, replies_fd, offered=()):
    """Run ``code`` as ``__main__``, say how that went, then answer calls until the judge closes the pipe.

    ``offered``: names the tests will take (the job's entry points); their values go with ``ready`` (a round
    trip each saved), as ``get`` would answer them: those the program defines and that can be sent.
    """
    # The program's code runs right below this frame (its module under ``exec``, the functions the tests
    # call under ``_answer``): a helper around either would take a frame of the program's recursion depth.
    reply = _replier(replies_fd)
    namespace = fresh_main()
    try:
        exec(code, namespace)
    except SystemExit as exc:
        _exit_telling_judge(exc, reply)
    except BaseException as exc:
        print_exception(exc)
        reply(("error", type(exc).__name__, plain.describe(exc)))
        flush_streams()
        os._exit(1)
    objects = []  # what a handle number names, on this side

    def handle_of(obj):
        objects.append(obj)
        return plain.Handle(len(objects) - 1)

    values = {name: namespace[name] for name in offered if name in namespace}
    try:
        ready = plain.encode(("ready", values), handle_of)
    except (plain.BadMessage, RecursionError, MemoryError, ValueError):
        ready = plain.encode(("ready", {}))  # the judge asks for each, and meets the error there
    if not plain.write_frame(replies_fd, ready):
        os._exit(0)  # the judge has gone

    def object_for(number):
        if not 0 <= number < len(objects):
            raise plain.BadMessage(f"no object {number}")
        return objects[number]

    reader = plain.FrameReader(requests_fd, REQUEST_CAP)
    while True:
        try:
            frame = reader.next()
        except plain.BadMessage:
            frame = None
        if frame is None:
            flush_streams()
            os._exit(0)
        try:
            request = plain.decode(frame, object_for)
            result = _answer(namespace, request)
        except SystemExit as exc:
            _exit_telling_judge(exc, reply)
        except BaseException as exc:
            reply(("raise", type(exc).__name__, plain.describe(exc)))
            continue
        reply(("ok", result), handle_of)


def _replier(replies_fd):
    """``reply(message, handle_of=None)``: send ``message`` to the judge; exit quietly once the judge has gone."""

    def reply(message, handle_of=None):
        try:
            payload = plain.encode(message, handle_of)
        except plain.BadMessage as exc:
            payload = plain.encode(("raise", "TypeError", f"the result cannot be sent to the tests: {exc}"))
        except (RecursionError, MemoryError, ValueError) as exc:
            payload = plain.encode(("raise", type(exc).__name__, "the result cannot be sent to the tests"))
        if not plain.write_frame(replies_fd, payload):
            os._exit(0)  # the judge has gone

    return reply


def _exit_telling_judge(exc, reply):
    """Exit as ``python`` does for the ``SystemExit`` ``exc``, once the judge knows the status."""
    status = exit_status(exc)
    flush_streams()
    reply(("exit", status))
    os._exit(status)


_BUILTIN_REQUESTS = {"iter": list, "len": len, "bool": bool, "str": str}  # op -> what answers it


def _answer(namespace, request):
    """Carry out one request of the judge: ``(operation, target, ...)``."""
    op, target, *rest = request
    if op == "get":
        if target not in namespace:
            raise NameError(f"name {target!r} is not defined")
        return namespace[target]
    if op == "call":
        args, kwargs = rest
        return target(*args, **kwargs)
    if op == "getattr":
        return getattr(target, rest[0])
    if op == "getitem":
        return target[rest[0]]
    if op in _BUILTIN_REQUESTS:
        return _BUILTIN_REQUESTS[op](target)
    raise ValueError(f"unknown request {op!r}")


# ---------------------------------------------------------------------------------------------
# Stdin/stdout tests: run the program once, finish as the interpreter would.


def run_once(code):
    """Run ``code`` as ``__main__`` with the standard streams already in place, and exit as Python does."""
    streams = sys.stdout, sys.stderr
    namespace = fresh_main()
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as exc:
        status = exit_status(exc)
    except BaseException as exc:
        print_exception(exc)
        status = 1
    finish_like_python(namespace, streams, status)


def finish_like_python(namespace, streams, status):
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
    if not flush_streams() and status == 0:
        status = 120  # CPython's status when flushing sys.stdout at exit fails
    sys.stdout, sys.stderr = streams  # as CPython restores sys.__stdout__ before clearing modules
    namespace.clear()
    gc.collect()
    for stream in streams:  # the originals may hold what the program wrote to sys.__stdout__
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def exit_status(exc):
    """The status ``python`` exits with for ``SystemExit(exc.code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def flush_streams():
    """CPython's ``flush_std_files``: flush ``sys.stdout`` and ``sys.stderr`` unless closed."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            ok = False
    return ok


def print_exception(exc):
    try:
        import traceback

        tb = exc.__traceback__
        tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # from the program's frame on
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(2, f"{plain.describe(exc)}\n".encode("utf-8", "replace"))

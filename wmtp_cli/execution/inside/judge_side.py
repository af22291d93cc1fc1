"""The judge: runs a job's assert tests where the judged program cannot reach them.

The judge runs in the server's own process (``server.py``), never in the program's. It runs only
trusted code: the record's program prefix (HumanEval's prompt: imports, helper functions, the
signature of the function to write), the tests' setup and the test statements. The names the tests
take from the program (``entry_points``: the function to write, a class its tests build) are
stand-ins, :class:`Remote` objects: calling one sends the call's arguments to the program's process
as plain data and gets plain data back (``plain.py``), or a handle to an object that stays over
there. So nothing the program defines or changes runs here: not an ``__eq__`` that is always true,
not a patched ``builtins.abs`` or ``math.fabs``, not a replaced ``exec``, and its frames, ``gc`` and
``sys.settrace`` reach only its own process. The verdict goes from here to the executor through the
server's own pipe, which the program never holds; the server is non-dumpable (no ptrace, no
``/proc/<pid>/fd`` or ``mem``) and, as root, runs the program under another user id.

Each job's tests start from the same state: a fresh namespace, and the global ``random`` generator
seeded with 0 (HumanEval's tests draw inputs from it), so every program meets the same inputs.

Stdlib only.
"""

import builtins
import os
import sys
import warnings

import plain

REPLY_CAP = 64 << 20  # bytes of one answer from the program
_EXCEPTIONS = {
    name: cls
    for name, cls in vars(builtins).items()
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, Warning)
}


class ProgramEnded(Exception):
    """The program's process ended, or broke the protocol (``protocol``), while the tests still needed it."""

    def __init__(self, why, protocol=False):
        super().__init__(why)
        self.protocol = protocol


class ProgramError(Exception):
    """An exception raised in the program whose type is not a builtin one (its name and message)."""


class JudgeStop(BaseException):
    """The job must stop now (its time, memory or output limit); raised by the server's ``wait``."""


class Link:
    """The judge's end of the pipes to the program's process (non-blocking descriptors).

    ``wait(fd, write)`` returns when ``fd`` can be read (or written), and raises :class:`JudgeStop`
    when the job breaks a limit meanwhile: the server watches the job while the judge waits.
    """

    def __init__(self, requests_fd, replies_fd, wait):
        self.requests_fd, self.replies_fd, self.wait = requests_fd, replies_fd, wait
        self.ended = None  # why the program can no longer answer
        self.replies = plain.FrameReader(replies_fd, REPLY_CAP, wait=lambda: wait(replies_fd, False))

    def receive(self):
        """The next message from the program (a tuple), decoded with its handles as :class:`Remote` objects."""
        if self.ended:
            raise ProgramEnded(self.ended)
        try:
            message = plain.decode(self._frame(), lambda number: Remote(number, self))
        except plain.BadMessage as exc:
            self._end(f"the program sent something that is not plain data ({exc})", protocol=True)
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            self._end("the program sent a message in the wrong shape", protocol=True)
        return message

    def _frame(self):
        """The next frame's payload (read ahead: all that is in the pipe at each read)."""
        try:
            payload = self.replies.next()
        except plain.BadMessage as exc:  # past the cap, or cut short
            self._end(f"the program sent {exc}", protocol=True)
        if payload is None:
            self._end("the program's process ended")
        return payload

    def _send(self, payload):
        """Write one frame; wait for room in the pipe only when it is full."""
        data = memoryview(len(payload).to_bytes(plain.HEADER, "big") + payload)
        while data:
            try:
                data = data[os.write(self.requests_fd, data) :]
            except BlockingIOError:
                self.wait(self.requests_fd, True)
            except OSError:
                self._end("the program's process ended")

    def _end(self, why, protocol=False):
        self.ended = why
        raise ProgramEnded(why, protocol)

    def ask(self, *request):
        """Send a request and return the program's answer, raising what it raised."""
        if self.ended:
            raise ProgramEnded(self.ended)
        self._send(plain.encode(request, _handle_of_remote))
        kind, *rest = self.receive()
        if kind == "ok" and len(rest) == 1:
            return rest[0]
        if kind == "raise" and len(rest) == 2 and all(isinstance(x, str) for x in rest):
            name, text = rest
            if name in _EXCEPTIONS:
                raise _EXCEPTIONS[name](text[: plain.DETAIL_CHARS])
            raise ProgramError(f"{name}: {text}")
        if kind == "exit" and len(rest) == 1 and isinstance(rest[0], int):
            self._end(f"the program exited with status {rest[0]} during a test")
        self._end("the program answered out of turn", protocol=True)


def _handle_of_remote(obj):
    if isinstance(obj, Remote):
        return plain.Handle(object.__getattribute__(obj, "_number"))
    raise TypeError(f"a {type(obj).__name__} cannot be passed to the program: only plain data and its own objects")


class Remote:
    """A stand-in for an object of the program's: every use is a request, every answer plain data or a Remote."""

    __slots__ = ("_link", "_number")

    def __init__(self, number, link):
        object.__setattr__(self, "_number", number)
        object.__setattr__(self, "_link", link)

    def _ask(self, op, *args):
        handle = plain.Handle(object.__getattribute__(self, "_number"))
        return object.__getattribute__(self, "_link").ask(op, handle, *args)

    def __call__(self, *args, **kwargs):
        return self._ask("call", list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # protocols probed by copy, pickle, inspect: not the program's to answer
        return self._ask("getattr", name)

    def __setattr__(self, name, value):
        raise TypeError("the tests cannot change an object of the program's")

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __iter__(self):
        items = self._ask("iter")
        if not isinstance(items, list):
            raise TypeError("the program's object did not iterate to a list")
        return iter(items)

    def _ask_exactly(self, op, kind, what):
        """The answer to ``op``, which must be of type ``kind`` itself, as the builtin ``op()`` insists."""
        value = self._ask(op)
        if type(value) is not kind:
            raise TypeError(f"{op}() of the program's object is not {what}")
        return value

    def __len__(self):
        return self._ask_exactly("len", int, "an int")

    def __bool__(self):
        return self._ask_exactly("bool", bool, "a bool")

    def __str__(self):
        return self._ask_exactly("str", str, "a str")

    def __repr__(self):
        return f"<program object #{object.__getattribute__(self, '_number')}>"

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


def stand_in_names(spec, namespace):
    """The names the tests take from the program: given by the job, or every name they read that the
    trusted code does not define (or defines as a stub) and that is not a builtin."""
    if spec["entry_points"] is not None:
        return list(spec["entry_points"])
    names = _names_module()
    read = names.loaded_names([spec["setup"], *spec["statements"]]) or set()
    stubs = names.stub_names(spec["prefix"])
    return sorted(name for name in read if (name not in namespace or name in stubs) and not hasattr(builtins, name))


def _names_module():
    """``names.py``, imported on first need (its ``ast`` is 1.5 MB that every fork of the server would map, and jobs
    usually name their entry points), from beside this file: the server took this folder out of ``sys.path``."""
    global _NAMES
    if _NAMES is None:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, here)
        try:
            import names as _NAMES
        finally:
            sys.path.remove(here)
    return _NAMES


_NAMES = None  # names.py, once imported


def judge(spec, link):
    """Run the tests against the program behind ``link``: ``("test", i, "passed"|"failed", detail)`` messages
    and ``("done",)``, or one message saying why the tests could not run. :class:`JudgeStop` passes through."""
    import random

    random.seed(0)  # HumanEval's tests draw inputs from the global generator: the same ones for every program
    return _judge(spec, link)


def _judge(spec, link):
    try:
        kind, *rest = link.receive()
    except ProgramEnded as exc:
        return [_ended(exc)]
    if kind == "error" and len(rest) == 2:
        return [("program_error", str(rest[0]), str(rest[1])[: plain.DETAIL_CHARS])]
    if kind == "exit" and len(rest) == 1 and isinstance(rest[0], int):
        return [("program_exit", rest[0])]
    if kind != "ready":
        return [("program_ended", "the program answered out of turn", True)]
    offered = rest[0] if len(rest) == 1 and isinstance(rest[0], dict) else {}  # names it sent with ``ready``

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        prefix = compiled(spec["prefix"], "prompt.py")
    except SyntaxError:
        prefix = None  # a prefix that ends mid-statement defines nothing for the tests
    try:
        if prefix is not None:
            exec(prefix, namespace)
        exec(compiled(spec["setup"], "setup.py"), namespace)
    except JudgeStop:
        raise
    except BaseException as exc:  # the trusted code itself failed: no test can pass
        detail = f"the tests' setup failed: {plain.describe(exc)}"
        return [*(("test", i, "failed", detail) for i in range(len(spec["statements"]))), ("done",)]
    report = []
    try:
        for name in stand_in_names(spec, namespace):
            if name in offered:
                namespace[name] = offered[name]
                continue
            try:
                namespace[name] = link.ask("get", name)
            except NameError:
                namespace.pop(name, None)  # the tests meet a NameError, as they would
        for index, statement in enumerate(spec["statements"]):
            try:
                exec(compiled(statement, f"test_{index}.py"), namespace)
            except (JudgeStop, ProgramEnded):
                raise
            except BaseException as exc:
                report.append(("test", index, "failed", plain.describe(exc)))
            else:
                report.append(("test", index, "passed", ""))
    except ProgramEnded as exc:  # the tests cannot go on: not "done"
        return [*report, _ended(exc)]
    report.append(("done",))
    return report


_COMPILED = {}  # (source, file name) -> code: a problem's tests are compiled once for all its samples
_COMPILED_KEPT = 32  # the latest texts (a problem's samples come together; more would only grow every fork)


def compiled(source, filename):
    """``source`` compiled (trusted code: prompt, setup, tests), from the cache when seen lately."""
    key = (source, filename)
    code = _COMPILED.get(key)
    if code is None:
        if len(_COMPILED) >= _COMPILED_KEPT:
            del _COMPILED[next(iter(_COMPILED))]
        with warnings.catch_warnings():  # a test's own syntax warnings are nobody's business here
            warnings.simplefilter("ignore")
            code = _COMPILED[key] = compile(source, filename, "exec", dont_inherit=True)
    return code


def _ended(exc):
    return ("program_ended", str(exc), exc.protocol)

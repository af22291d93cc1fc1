"""Plain data across a pipe: the only thing a judged program can hand to the judge.

Values are encoded as JSON with a few tags, so that what the judge decodes is built from ``None``,
``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``bytearray``, ``list``, ``tuple``,
``set``, ``frozenset`` and ``dict`` alone, from builtins named by name (``int``, ``len``: each side
takes its own), and from :class:`Handle` (an opaque number the other side maps to one of its own
objects). Nothing in the decoded value runs code of the sender's: no
custom ``__eq__``, no ``__hash__`` of its choosing, no ``__repr__``. Subclasses of plain types are
sent as their base type (a ``bool`` subclass as a ``bool``, a ``Counter`` as a ``dict``), so a
``str`` subclass whose ``__eq__`` is always true arrives as a plain ``str``.

Messages are length-prefixed frames: four bytes of length, then that many bytes of JSON. A frame
longer than the reader's cap, a truncated one, JSON that is not in this shape, or nesting deeper
than :data:`MAX_DEPTH` is a :class:`BadMessage`, never anything else.

An exception crosses as its type's name and the one line :func:`describe` makes of it.

Stdlib only: this file runs inside the sandbox, in the judge and in the program's process.
"""

import builtins
import json
import json.decoder
import json.encoder
import math
import os

MAX_DEPTH = 100  # nesting of containers in one value
DETAIL_CHARS = 400  # characters of an exception's text that cross (:func:`describe`)
HEADER = 4
_SCALARS = frozenset({int, str, bool, type(None)})  # exact types JSON carries unchanged (floats: if finite)
_JSON_SCALARS = _SCALARS | {float}
# Builtins that may cross by name (MBPP passes ``int`` to a function): types and pure functions; not the
# ones that run code, touch files or reach into namespaces.
_UNSHAREABLE = {"__import__", "breakpoint", "compile", "delattr", "eval", "exec", "getattr", "globals", "help",
                "input", "locals", "open", "print", "setattr", "vars", "exit", "quit"}  # fmt: skip
# Bound once: in the program's process, a program that patches json.dumps for its own use must not break
# how it answers the judge. Where the C accelerators exist, called directly: ``json.dumps`` and ``json.loads``
# wrap them in Python, and every object made after a fork is a page copied.
_SCAN = json.decoder.JSONDecoder().scan_once
if json.encoder.c_make_encoder is not None:
    _ITERENCODE = json.encoder.c_make_encoder(None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False,
                                              False, False)  # fmt: skip

    def _ENCODE(tree):
        return "".join(_ITERENCODE(tree, 0))
else:
    _ENCODE = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _DECODE(text):
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("more than one JSON value")
    return value


SHAREABLE_BUILTINS = frozenset(
    name
    for name, value in vars(builtins).items()
    if not name.startswith("_") and name not in _UNSHAREABLE and (isinstance(value, type) or callable(value))
)


class BadMessage(Exception):
    """A frame or value that is not what this protocol allows."""


class Handle:
    """An object that stays on the other side, named by a number."""

    __slots__ = ("id",)

    def __init__(self, id):
        self.id = id


def encode(value, handle_of=None):
    """``value`` as bytes; an object that is not plain data becomes ``handle_of(obj)`` (a Handle), or an error."""
    return _ENCODE(_tree(value, handle_of, 0)).encode("ascii")


def _tree(value, handle_of, depth):
    kind = type(value)
    # The common cases first, by exact type (a subclass goes the long way below): a call's arguments and
    # results are mostly numbers, strings and flat lists of them.
    if kind in _SCALARS:
        return value
    if kind is float and math.isfinite(value):
        return value
    if kind is list and all(type(item) in _SCALARS for item in value):
        return value
    if depth > MAX_DEPTH:
        raise BadMessage(f"nested deeper than {MAX_DEPTH}")
    exact = _EXACT.get(kind)
    if exact is not None:
        return exact(value, handle_of, depth + 1)
    for base, convert in _BASES:  # subclasses of plain types: their base type's value, not their own methods
        if isinstance(value, base):
            return convert(value, handle_of, depth + 1)
    name = getattr(value, "__name__", None)
    if type(name) is str and name in SHAREABLE_BUILTINS and getattr(builtins, name, None) is value:
        return {"B": name}
    if handle_of is not None:
        return {"h": handle_of(value).id}
    raise BadMessage(f"a {kind.__name__} is not plain data")


def _float(value, handle_of, depth):
    number = float.__float__(value)
    return number if math.isfinite(number) else {"f": repr(number)}


def _items(values, handle_of, depth):
    return [_tree(item, handle_of, depth) for item in values]


_EXACT = {
    tuple: lambda v, h, d: {"t": _items(v, h, d)},
    list: _items,
    dict: lambda v, h, d: {"d": [[_tree(k, h, d), _tree(x, h, d)] for k, x in v.items()]},
    set: lambda v, h, d: {"s": _items(v, h, d)},
    frozenset: lambda v, h, d: {"fs": _items(v, h, d)},
    bytes: lambda v, h, d: {"b": v.hex()},
    bytearray: lambda v, h, d: {"ba": v.hex()},
    complex: lambda v, h, d: {"c": [_float(v.real, h, d), _float(v.imag, h, d)]},
    float: _float,
    Handle: lambda v, h, d: {"h": v.id},
}
_BASES = (
    (bool, lambda v, h, d: bool(v)),
    (int, lambda v, h, d: int.__int__(v)),  # the plain value, not what a subclass's __int__ says
    (float, _float),
    (str, lambda v, h, d: str.__str__(v)),
    (complex, lambda v, h, d: {"c": [_float(complex.__getattribute__(v, "real"), h, d),
                                     _float(complex.__getattribute__(v, "imag"), h, d)]}),
    (bytearray, lambda v, h, d: {"ba": bytes(v).hex()}),
    (bytes, lambda v, h, d: {"b": bytes.hex(v)}),
    (list, lambda v, h, d: _items(list.__iter__(v), h, d)),
    (tuple, lambda v, h, d: {"t": _items(tuple.__iter__(v), h, d)}),
    (frozenset, lambda v, h, d: {"fs": _items(frozenset.__iter__(v), h, d)}),
    (set, lambda v, h, d: {"s": _items(set.__iter__(v), h, d)}),
    (dict, lambda v, h, d: {"d": [[_tree(k, h, d), _tree(x, h, d)] for k, x in dict.items(v)]}),
)  # fmt: skip

_COLLECTIONS = {"t": tuple, "s": set, "fs": frozenset}  # tags whose body is the items, as a list


def encode_json(value):
    """``value`` as JSON bytes, with no tags (tuples become arrays): for what is JSON by construction, between the
    executor and the server (its jobs; the server's reports, whose shape the executor checks); the judge and the
    program talk in tagged plain data. :func:`decode_json` reads it."""
    return _ENCODE(value).encode("ascii")


def decode_json(data):
    """The JSON value in ``data`` (bytes from :func:`encode_json`); :class:`BadMessage` if it is not JSON."""
    try:
        return _DECODE(data.decode("ascii"))
    except (ValueError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON: {type(exc).__name__}") from None


def decode(data, handle_for=None):
    """The value in ``data`` (bytes); a tagged handle becomes ``handle_for(id)`` (default: a bare :class:`Handle`)."""
    try:
        tree = _DECODE(data.decode("ascii"))
        return _value(tree, handle_for or Handle, 0)
    except BadMessage:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError, UnicodeDecodeError, OverflowError) as exc:
        raise BadMessage(f"not a plain value: {type(exc).__name__}") from None


def _value(tree, handle_for, depth):
    kind = type(tree)
    if kind in _JSON_SCALARS or (kind is list and all(type(item) in _JSON_SCALARS for item in tree)):
        return tree  # what JSON decoding made is of these exact types: nothing to convert
    if depth > MAX_DEPTH:
        raise BadMessage(f"nested deeper than {MAX_DEPTH}")
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    nested = depth + 1
    if isinstance(tree, list):
        return [_value(item, handle_for, nested) for item in tree]
    if not isinstance(tree, dict) or len(tree) != 1:
        raise BadMessage("an unknown shape")
    ((tag, body),) = tree.items()
    if tag == "f" and body in ("inf", "-inf", "nan"):
        return float(body)
    if tag == "h" and isinstance(body, int):
        return handle_for(body)
    if tag == "B" and body in SHAREABLE_BUILTINS:
        return getattr(builtins, body)
    if tag in ("b", "ba") and isinstance(body, str):
        raw = bytes.fromhex(body)
        return raw if tag == "b" else bytearray(raw)
    if not isinstance(body, list):
        raise BadMessage(f"a bad {tag!r} value")
    items = [_value(item, handle_for, nested) for item in body]
    if tag in _COLLECTIONS:
        return _COLLECTIONS[tag](items)
    if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(items[0], items[1])
    if tag == "d" and all(isinstance(pair, list) and len(pair) == 2 for pair in items):
        return dict(items)
    raise BadMessage(f"a bad {tag!r} value")


def write_frame(fd, payload):
    """Write one frame (``payload`` bytes); False when the reader has gone."""
    data = len(payload).to_bytes(HEADER, "big") + payload
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return False
    return True


class CutShort(BadMessage):
    """The stream ended inside a frame."""


READ_AHEAD = 1 << 16  # bytes a read asks for beyond the frame being read (a frame's header comes with its payload)
READ_MOST = 1 << 20  # bytes one read asks for at most


class FrameReader:
    """The frames arriving on ``fd``, read ahead: one ``read`` takes what is there (a header and its payload, or
    several frames), so ``pending`` holds at most :data:`READ_AHEAD` bytes more than the frame being read.

    On a non-blocking ``fd``, ``wait()`` is called whenever nothing is there yet; it returns when something may
    be, or raises (a deadline, a limit). A read that fails otherwise counts as the end of the stream.
    """

    def __init__(self, fd, cap=None, wait=None):
        self.fd, self.cap, self.wait, self.pending = fd, cap, wait, bytearray()

    def next(self, cap=None):
        """The next frame's payload; None at the end of the stream; :class:`BadMessage` past the cap (``cap``, else
        the reader's), :class:`CutShort` when the stream ends inside a frame."""
        header = self._take(HEADER, at_end_ok=True)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        cap = self.cap if cap is None else cap
        if size > cap:
            raise BadMessage(f"a message of {size} bytes, over the {cap}-byte cap")
        return self._take(size)

    def _take(self, size, at_end_ok=False):
        pending = self.pending
        while len(pending) < size:
            try:
                chunk = os.read(self.fd, min(max(READ_AHEAD, size - len(pending)), READ_MOST))
            except InterruptedError:
                continue
            except BlockingIOError:
                self.wait()
                continue
            except OSError:
                chunk = b""
            if not chunk:
                if at_end_ok and not pending:
                    return None
                raise CutShort("a message cut short")
            pending += chunk
        data = bytes(pending[:size])
        del pending[:size]
        return data


def describe(exc):
    """``exc`` as one line of at most :data:`DETAIL_CHARS` characters: its type, and its text if it has one."""
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except BaseException:
        text = type(exc).__name__
    return text.replace("\n", " ")[:DETAIL_CHARS]

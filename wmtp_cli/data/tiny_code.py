"""tiny-code: a procedural Python benchmark small enough for a model of a few M parameters to learn.

Every problem is HumanEval-shaped: the prompt is a function signature and a one-line docstring that
fully determines the body, the completion is the body (4-space indents, ending in a newline), and
``program_prefix`` is the prompt, so ``prompt + completion`` is the program the assert tests call.
A problem has one correct solution and ``n_incorrect`` incorrect ones, each the correct one with a
single small edit (one operator, constant, variable name or bound).

Task families (each drawn with every argument name in its tuple, e.g. ``xs``/``nums``/``vals``):

- ``map_list``: ``Return a list of x plus 3 for each item x of xs.`` (loop + append)
- ``filter_list``: ``Return a list of the items of xs that are greater than 4.``
- ``filter_map``: ``Return a list of x times 2 for each item x of xs that is at most 5.``
- ``count_if``: ``Return how many items of xs are not equal to 3.``
- ``sum_if``: ``Return the sum of the items of xs that are less than 6.``
- ``sum_map``: ``Return the sum of x modulo 4 for each item x of xs.``
- ``series``: ``Return the sum (or product) of i minus 2 for each i from 1 to n`` (or ``from 0 to n - 1``).
- ``piecewise``: ``Return x plus 3 if x is greater than 5, otherwise x minus 2.``
- ``combine``: ``Return a times 3 plus b.`` (two arguments; ``*``, ``//`` or ``%`` then ``+`` or ``-``)
- ``find_index``: ``Return the index of the first item of xs that is at least 4, or -1 if there is none.``
- ``count_char``: ``Return how many characters of s are 'a'.`` (or ``are not 'a'``)
- ``replace_char``: ``Return s with every 'a' replaced by 'b'.``
- ``slice_str``: ``Return the first 3 characters of s.`` (or the last 3, or s without its first or last 3)

Operators are ``+ - * // %`` (``plus``, ``minus``, ``times``, ``floor-divided by``, ``modulo``) and
``> < >= <= == !=`` (``greater than``, ``less than``, ``at least``, ``at most``, ``equal to``,
``not equal to``); arithmetic constants are 2-9, comparison constants 1-9, characters a-h.

Mutations (:data:`KINDS`); each replaces one marked token of the correct body:

- ``off_by_one``: a constant +-1 (``x + 3`` -> ``x + 4``, ``count = 0`` -> ``count = 1``), a strict
  comparison made non-strict or back (``>`` -> ``>=``), a range bound moved (``n + 1`` -> ``n``).
- ``wrong_operator``: an arithmetic operator confused with a neighbour (``+`` -> ``-``, ``//`` -> ``%``).
- ``wrong_constant``: a constant or character replaced by another of its pool at least 2 away.
- ``swapped_condition``: a comparison turned around (``>`` -> ``<``, ``==`` -> ``!=``).
- ``wrong_variable``: another variable in scope (``return out`` -> ``return xs``, ``a * 3`` -> ``b * 3``).

A candidate mutation is kept only if the mutated function fails one of the problem's tests (checked
here by running it in this process; the code is ours, loop bounds are small and there is no
``while``), so every incorrect solution fails and every correct one passes. The chosen mutations cycle
through the kinds a problem allows, in an order drawn per problem.

Mutation spans: :class:`Mutation` ``start``/``end`` are character offsets of the replaced token in
the *incorrect* completion and ``original`` is the correct text there, so
``incorrect[:start] + original + incorrect[end:] == correct``. Records keep exactly the
:class:`~wmtp_cli.data.records.ProblemRecord` keys (every source's loader returns those columns), so
spans are not in the record: :func:`tiny_code_mutations` gives them for a :class:`DataConfig`, keyed by
task id and then incorrect completion text (so ``data.limit`` and ``data.max_solutions`` do not
misalign them).

Split rule: a problem's *combinations* are its (operator, constant) pairs, e.g. ``filter_map`` with
``> 4`` and ``* 2`` has (``>``, 4) and (``*``, 2); character families use (``==``, ``a``) or
(``replace``, ``a``) and (``with``, ``b``), ``slice_str`` (``first``, 3). For each family a fraction
``holdout`` (default 0.2) of its pairs is drawn from ``seed`` and held out, never all of one operator
or of one constant, so every operator and constant still appears in train. A problem is in ``test``
when any of its pairs is held out for its family, else in ``train``: the test split asks for
(family, operator, constant) combinations the train split never shows, with every argument name.

Sampling: each family's problems are shuffled (fixed by seed, split and family) and drawn round-robin
across families, so the first N problems are balanced and growing ``n`` only appends; a family that
runs out leaves its turns to the others. Each problem's text, tests and mutations depend only on the
seed and the problem itself, and the held-out pairs only on the seed and ``holdout``, so the test split
does not change with ``n_train``. Task ids are ``tiny-code/<split>/<index>``.

Through :func:`wmtp_cli.data.sources.load_problems` with ``data.source=tiny-code`` (no files;
``data.path`` must be null), ``data.split`` is ``train`` or ``test`` and ``data.subset`` may set the
generator's options as ``"seed=0,n_train=2000,n_test=200,n_incorrect=3,holdout=0.2"`` (any of them;
these are the defaults). The generator's seed is not ``load_problems``' seed: evaluation and scoring
pass different ones and must see the same problems.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

from wmtp_cli.errors import UsageError

SOURCE = "tiny-code"
SPLITS = ("train", "test")
KINDS = ("off_by_one", "wrong_operator", "wrong_constant", "swapped_condition", "wrong_variable")
DEFAULTS: dict[str, Any] = {"seed": 0, "n_train": 2000, "n_test": 200, "n_incorrect": 3, "holdout": 0.2}
"""Generator options and their defaults (``data.subset`` may set any of them)."""

ARITH = {"+": "plus", "-": "minus", "*": "times", "//": "floor-divided by", "%": "modulo"}
CMP = {">": "greater than", "<": "less than", ">=": "at least", "<=": "at most", "==": "equal to", "!=": "not equal to"}
ARITH_K = tuple(range(2, 10))  # no 0 or 1: x * 1, x // 1 and x % 1 are degenerate
CMP_K = tuple(range(1, 10))
CHARS = "abcdefgh"
SLICE_K = tuple(range(1, 7))
LIST_NAMES = ("xs", "nums", "vals")
NUM_NAMES = ("x", "n", "v")
BOUND_NAMES = ("n", "m", "k")
STR_NAMES = ("s", "text", "word")
PAIR_NAMES = (("a", "b"), ("x", "y"), ("m", "n"))

# Confusions a programmer makes (neighbouring operators), not every other operator.
ARITH_SWAPS = {"+": ("-", "*"), "-": ("+",), "*": ("+", "//"), "//": ("%", "*"), "%": ("//",)}
CMP_SWAPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "!=", "!=": "=="}
CMP_OFF_BY_ONE = {">": ">=", ">=": ">", "<": "<=", "<=": "<"}
CMP_FN = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Mutation(TypedDict):
    """Where an incorrect completion differs from the correct one: ``incorrect[start:end]`` was ``original``."""

    start: int
    end: int
    kind: str
    original: str


@dataclass(frozen=True)
class Slot:
    """A token of a correct body and the (kind, replacement) edits that make it wrong."""

    text: str
    edits: tuple[tuple[str, str], ...]


@dataclass
class Task:
    """One problem's function before its tests and mutations; ``body``'s slots are the tokens a mutation may edit."""

    name: str
    args: tuple[str, ...]
    doc: str
    body: list[str | Slot]


@dataclass(frozen=True)
class TinyCodeProblem:
    """A generated problem: ``mutations[i]`` says where ``incorrect_solutions[i]`` differs from ``solution``."""

    task_id: str
    family: str
    pairs: tuple[tuple[str, str], ...]
    prompt: str
    entry_point: str
    solution: str
    incorrect_solutions: list[str]
    mutations: list[Mutation]
    tests: list[str]

    def row(self) -> dict[str, Any]:
        """The raw row :mod:`wmtp_cli.data.schemas` normalises (schema ``tiny_code``)."""
        return {
            "task_id": self.task_id,
            "family": self.family,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "solution": self.solution,
            "incorrect_solutions": list(self.incorrect_solutions),
            "mutations": [dict(m) for m in self.mutations],
            "test_list": list(self.tests),
        }


# Slots -------------------------------------------------------------------------------------------


def arith(op: str) -> Slot:
    return Slot(op, tuple(("wrong_operator", other) for other in ARITH_SWAPS[op]))


def cmp(op: str) -> Slot:
    edits = [("swapped_condition", CMP_SWAPPED[op])]
    if op in CMP_OFF_BY_ONE:
        edits.append(("off_by_one", CMP_OFF_BY_ONE[op]))
    return Slot(op, tuple(edits))


def const(k: int, pool: tuple[int, ...]) -> Slot:
    edits = [("off_by_one", str(k - 1)), ("off_by_one", str(k + 1))]
    edits += [("wrong_constant", str(other)) for other in pool if abs(other - k) >= 2]
    return Slot(str(k), tuple(edits))


def char(c: str) -> Slot:
    """The letter inside its quotes: the span is the character that changed, not the quotes around it."""
    return Slot(c, tuple(("wrong_constant", other) for other in CHARS if other != c))


def var(name: str, *others: str) -> Slot:
    return Slot(name, tuple(("wrong_variable", other) for other in others))


def fixed(text: str, kind: str, *replacements: str) -> Slot:
    return Slot(text, tuple((kind, r) for r in replacements))


# Test inputs -------------------------------------------------------------------------------------


def int_lists(rng: random.Random, around: tuple[int, ...] = (), n: int = 4) -> list[tuple]:
    """``n`` lists of small ints; the values next to a compared constant are spread over them, so a
    comparison off by one, or turned around, changes some expected output."""
    lists = [[rng.randint(0, 12) for _ in range(rng.randint(2, 5))] for _ in range(n)]
    for i, value in enumerate(v for c in around for v in (c - 1, c, c + 1)):
        lists[i % n].insert(rng.randint(0, len(lists[i % n])), value)
    return [(xs,) for xs in lists]


def avoiding(rng: random.Random, test: Callable[[int], bool]) -> tuple:
    """A list none of whose items satisfy ``test`` (for "or -1 if there is none")."""
    values = [v for v in range(13) if not test(v)]
    return ([rng.choice(values) for _ in range(rng.randint(2, 4))],) if values else ([],)


def strings(rng: random.Random, must: str = "", min_len: int = 3, n: int = 4) -> list[tuple]:
    out = []
    for i in range(n):
        s = [rng.choice(CHARS) for _ in range(rng.randint(min_len, min_len + 5))]
        if must and i < n - 1:  # the last one may lack it
            s[rng.randrange(len(s))] = must
        out.append(("".join(s),))
    return out


# Families ----------------------------------------------------------------------------------------
# A family lists its problems as parameter tuples (an argument name first), names each problem's
# (operator, constant) pairs for the split rule, and builds the function and its test inputs.

T = tuple(itertools.product(ARITH, ARITH_K))
C = tuple(itertools.product(CMP, CMP_K))


def list_loop(xs: str, cond: tuple[str, int] | None, item: list[str | Slot], acc: str, init: str | Slot, other: str):
    """``acc = init / for x in xs: / [if x <op> k:] / item / return acc``, the body of the list families.

    ``other`` is the wrong variable a return may name: the input list where the result is a list,
    the loop variable where it is a number.
    """
    body: list[str | Slot] = ["    ", acc, " = ", init, "\n", f"    for x in {xs}:\n"]
    indent = "        "
    if cond is not None:
        body += [indent, "if x ", cmp(cond[0]), " ", const(cond[1], CMP_K), ":\n"]
        indent += "    "
    return [*body, indent, *item, "\n", "    return ", var(acc, other), "\n"]


def _append(op: str, k: int) -> list[str | Slot]:
    return ["out.append(x ", arith(op), " ", const(k, ARITH_K), ")"]


def _map_list(p):
    xs, (op, k) = p
    body = list_loop(xs, None, _append(op, k), "out", "[]", xs)
    return Task("transform", (xs,), f"Return a list of x {ARITH[op]} {k} for each item x of {xs}.", body)


def _filter_list(p):
    xs, (op, k) = p
    body = list_loop(xs, (op, k), ["out.append(x)"], "out", "[]", xs)
    return Task("keep", (xs,), f"Return a list of the items of {xs} that are {CMP[op]} {k}.", body)


def _filter_map(p):
    xs, (cop, ck), (op, k) = p
    body = list_loop(xs, (cop, ck), _append(op, k), "out", "[]", xs)
    doc = f"Return a list of x {ARITH[op]} {k} for each item x of {xs} that is {CMP[cop]} {ck}."
    return Task("keep_transform", (xs,), doc, body)


def _count_if(p):
    xs, (op, k) = p
    item = ["count += ", fixed("1", "wrong_constant", "2")]
    body = list_loop(xs, (op, k), item, "count", fixed("0", "off_by_one", "1"), "x")
    return Task("count_items", (xs,), f"Return how many items of {xs} are {CMP[op]} {k}.", body)


def _sum_if(p):
    xs, (op, k) = p
    body = list_loop(xs, (op, k), ["total += x"], "total", fixed("0", "off_by_one", "1"), "x")
    return Task("sum_items", (xs,), f"Return the sum of the items of {xs} that are {CMP[op]} {k}.", body)


def _sum_map(p):
    xs, (op, k) = p
    item = ["total += x ", arith(op), " ", const(k, ARITH_K)]
    body = list_loop(xs, None, item, "total", fixed("0", "off_by_one", "1"), "x")
    return Task("sum_transform", (xs,), f"Return the sum of x {ARITH[op]} {k} for each item x of {xs}.", body)


def _series(p):
    n, agg, start, (op, k) = p
    init, update = ("0", "+=") if agg == "sum" else ("1", "*=")
    if start == 1:
        bounds: list[str | Slot] = [fixed("1", "off_by_one", "0", "2"), ", ", fixed(f"{n} + 1", "off_by_one", n)]
        span = f"from 1 to {n}"
    else:
        bounds = [fixed(n, "off_by_one", f"{n} + 1", f"{n} - 1")]
        span = f"from 0 to {n} - 1"
    body = [
        "    total = ", fixed(init, "off_by_one", str(int(init) + 1)), "\n",
        "    for i in range(", *bounds, "):\n",
        f"        total {update} ", var("i", n), " ", arith(op), " ", const(k, ARITH_K), "\n",
        "    return total\n",
    ]  # fmt: skip
    return Task("series", (n,), f"Return the {agg} of i {ARITH[op]} {k} for each i {span}.", body)


def _useful_series(p) -> bool:
    """Products that are not 0 for most n: a factor i * k, i // k or i % k is 0 at i = 0, and i // k,
    i % k or i - k is 0 somewhere in 1..k."""
    _, agg, start, (op, _) = p
    return agg == "sum" or op == "+" or (op == "*" and start == 1)


def _piecewise(p):
    x, (cop, ck), (op1, a), (op2, b) = p
    body = [
        f"    if {x} ", cmp(cop), " ", const(ck, CMP_K), ":\n",
        f"        return {x} ", arith(op1), " ", const(a, ARITH_K), "\n",
        f"    return {x} ", arith(op2), " ", const(b, ARITH_K), "\n",
    ]  # fmt: skip
    doc = f"Return {x} {ARITH[op1]} {a} if {x} is {CMP[cop]} {ck}, otherwise {x} {ARITH[op2]} {b}."
    return Task("piecewise", (x,), doc, body)


COMBINE_FIRST = tuple(itertools.product(("*", "//", "%"), ARITH_K))


def _combine(p):
    (a, b), first, (op1, k), op2 = p
    u, w = (a, b) if first == 0 else (b, a)
    body = ["    return ", var(u, w), " ", arith(op1), " ", const(k, ARITH_K), " ", arith(op2), " ", var(w, u), "\n"]
    return Task("combine", (a, b), f"Return {u} {ARITH[op1]} {k} {ARITH[op2]} {w}.", body)


def _find_index(p):
    xs, (op, k) = p
    body = [
        f"    for i in range(len({xs})):\n",
        f"        if {xs}[i] ", cmp(op), " ", const(k, CMP_K), ":\n",
        "            return i\n",
        "    return -", fixed("1", "off_by_one", "2"), "\n",
    ]  # fmt: skip
    doc = f"Return the index of the first item of {xs} that is {CMP[op]} {k}, or -1 if there is none."
    return Task("find_index", (xs,), doc, body)


def _count_char(p):
    s, op, c = p
    body = [
        "    count = ", fixed("0", "off_by_one", "1"), "\n",
        f"    for c in {s}:\n",
        "        if c ", cmp(op), ' "', char(c), '":\n',
        "            count += 1\n",
        "    return ", var("count", "c"), "\n",
    ]  # fmt: skip
    are = "are" if op == "==" else "are not"
    return Task("count_char", (s,), f"Return how many characters of {s} {are} '{c}'.", body)


def _replace_char(p):
    s, c, d = p
    body = [
        '    out = ""\n',
        f"    for c in {s}:\n",
        "        if c ", cmp("=="), ' "', char(c), '":\n',
        '            out += "', char(d), '"\n',
        "        else:\n",
        "            out += ", var("c", s), "\n",
        "    return ", var("out", s), "\n",
    ]  # fmt: skip
    return Task("replace_char", (s,), f"Return {s} with every '{c}' replaced by '{d}'.", body)


SLICES = {
    "first": ("Return the first {k} characters of {s}.", "[:", "]"),
    "last": ("Return the last {k} characters of {s}.", "[-", ":]"),
    "drop_first": ("Return {s} without its first {k} characters.", "[", ":]"),
    "drop_last": ("Return {s} without its last {k} characters.", "[:-", "]"),
}


def _slice_str(p):
    s, how, k = p
    doc, left, right = SLICES[how]
    body = [f"    return {s}{left}", const(k, SLICE_K), f"{right}\n"]
    return Task("cut", (s,), doc.format(k=k, s=s), body)


def _list_inputs(p, rng):
    """Boundary values of the compared constant, if any (the second parameter of the filter families)."""
    return int_lists(rng, (p[1][1],) if p[1][0] in CMP else ())


def _series_inputs(p, rng):
    return [(n,) for n in sorted({*rng.sample(range(7), 3), 1, 4})]


def _piecewise_inputs(p, rng):
    ck = p[1][1]
    return [(v,) for v in (ck - 1, ck, ck + 1, rng.randint(0, 15), rng.randint(0, 15))]


def _combine_inputs(p, rng):
    return [(rng.randint(0, 20), rng.randint(0, 20)) for _ in range(4)]


def _find_index_inputs(p, rng):
    op, k = p[1]
    return [*int_lists(rng, (k,), n=3), avoiding(rng, lambda v: CMP_FN[op](v, k))]


def _pairs(*items: tuple[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((op, str(k)) for op, k in items)


@dataclass(frozen=True)
class Family:
    params: Callable[[], list[tuple]]
    pairs: Callable[[tuple], tuple[tuple[str, str], ...]]
    universe: tuple[tuple[str, str], ...]
    """Every pair the family's problems can have (what the split rule draws from)."""
    task: Callable[[tuple], Task]
    inputs: Callable[[tuple, random.Random], list[tuple]]


def _product(*pools, keep: Callable[[tuple], bool] = lambda p: True) -> Callable[[], list[tuple]]:
    return lambda: [p for p in itertools.product(*pools) if keep(p)]


FAMILIES: dict[str, Family] = {
    "map_list": Family(_product(LIST_NAMES, T), lambda p: _pairs(p[1]), _pairs(*T), _map_list, _list_inputs),
    "filter_list": Family(_product(LIST_NAMES, C), lambda p: _pairs(p[1]), _pairs(*C), _filter_list, _list_inputs),
    "filter_map": Family(
        _product(LIST_NAMES, C, T), lambda p: _pairs(p[1], p[2]), _pairs(*C, *T), _filter_map, _list_inputs
    ),
    "count_if": Family(_product(LIST_NAMES, C), lambda p: _pairs(p[1]), _pairs(*C), _count_if, _list_inputs),
    "sum_if": Family(_product(LIST_NAMES, C), lambda p: _pairs(p[1]), _pairs(*C), _sum_if, _list_inputs),
    "sum_map": Family(_product(LIST_NAMES, T), lambda p: _pairs(p[1]), _pairs(*T), _sum_map, _list_inputs),
    "series": Family(
        _product(BOUND_NAMES, ("sum", "product"), (0, 1), T, keep=_useful_series),
        lambda p: _pairs(p[3]),
        _pairs(*T),
        _series,
        _series_inputs,
    ),
    "piecewise": Family(
        _product(NUM_NAMES, C, T, T, keep=lambda p: p[2] != p[3]),  # equal branches make the condition moot
        lambda p: _pairs(p[1], p[2], p[3]),
        _pairs(*C, *T),
        _piecewise,
        _piecewise_inputs,
    ),
    "combine": Family(
        _product(PAIR_NAMES, (0, 1), COMBINE_FIRST, ("+", "-")),
        lambda p: _pairs(p[2]),
        _pairs(*COMBINE_FIRST),
        _combine,
        _combine_inputs,
    ),
    "find_index": Family(_product(LIST_NAMES, C), lambda p: _pairs(p[1]), _pairs(*C), _find_index, _find_index_inputs),
    "count_char": Family(
        _product(STR_NAMES, ("==", "!="), CHARS),
        lambda p: _pairs(p[1:]),
        _pairs(*itertools.product(("==", "!="), CHARS)),
        _count_char,
        lambda p, rng: strings(rng, must=p[2]),
    ),
    "replace_char": Family(
        _product(STR_NAMES, CHARS, CHARS, keep=lambda p: p[1] != p[2]),
        lambda p: (("replace", p[1]), ("with", p[2])),
        _pairs(*itertools.product(("replace", "with"), CHARS)),
        _replace_char,
        lambda p, rng: strings(rng, must=p[1]),
    ),
    "slice_str": Family(
        _product(STR_NAMES, SLICES, SLICE_K),
        lambda p: _pairs(p[1:]),
        _pairs(*itertools.product(SLICES, SLICE_K)),
        _slice_str,
        lambda p, rng: [("ab",), *strings(rng, min_len=p[2] + 1, n=3)],
    ),
}
"""Family name -> how its problems are listed, split and built (see the module docstring)."""


# Building one problem ----------------------------------------------------------------------------


def _text(body: list[str | Slot]) -> str:
    return "".join(part if isinstance(part, str) else part.text for part in body)


def _function(program: str, name: str) -> Callable:
    namespace: dict[str, Any] = {}
    exec(compile(program, "<tiny-code>", "exec"), namespace)
    return namespace[name]


def _fails(function: Callable, inputs: list[tuple], expected: list[Any]) -> bool:
    for args, want in zip(inputs, expected, strict=True):
        try:
            got = function(*_copy(args))
        except Exception:
            return True
        if type(got) is not type(want) or got != want:
            return True
    return False


def _copy(args: tuple) -> tuple:
    return tuple(list(a) if isinstance(a, list) else a for a in args)


def _mutants_by_kind(body: list[str | Slot], solution: str) -> dict[str, list[tuple[str, Mutation]]]:
    """Every single-token mutation of ``solution`` (the text of ``body``), as (text, span), by kind."""
    by_kind: dict[str, list[tuple[str, Mutation]]] = {}
    offset = 0
    for part in body:
        if isinstance(part, str):
            offset += len(part)
            continue
        for kind, replacement in part.edits:
            text = solution[:offset] + replacement + solution[offset + len(part.text) :]
            mutation: Mutation = {
                "start": offset,
                "end": offset + len(replacement),
                "kind": kind,
                "original": part.text,
            }
            by_kind.setdefault(kind, []).append((text, mutation))
        offset += len(part.text)
    return by_kind


def _choose_mutants(
    by_kind: dict[str, list[tuple[str, Mutation]]], rng: random.Random, n_incorrect: int, fails: Callable[[str], bool]
) -> list[tuple[str, Mutation]]:
    """Up to ``n_incorrect`` distinct mutants that ``fails``, drawn from the kinds in turn (``by_kind`` is used up)."""
    # Draw kinds in a random cycle, one candidate at a time, testing only what is drawn (most pass).
    for candidates in by_kind.values():
        rng.shuffle(candidates)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    chosen: list[tuple[str, Mutation]] = []
    while len(chosen) < n_incorrect and kinds:
        for kind in list(kinds):
            if len(chosen) == n_incorrect:
                break
            while by_kind[kind]:
                text, mutation = by_kind[kind].pop()
                if text not in (t for t, _ in chosen) and fails(text):
                    chosen.append((text, mutation))
                    break
            if not by_kind[kind]:
                kinds.remove(kind)
    return chosen


def build_problem(family: str, params: tuple, seed: int, n_incorrect: int) -> TinyCodeProblem | None:
    """The problem ``params`` of ``family`` (task id left empty), or None if fewer than ``n_incorrect``
    of its mutations change what its tests see. Depends only on its arguments."""
    spec = FAMILIES[family]
    rng = random.Random(f"{seed}/{family}/{params!r}")
    task = spec.task(params)
    prompt = f'def {task.name}({", ".join(task.args)}):\n    """{task.doc}"""\n'
    solution = _text(task.body)
    inputs = spec.inputs(params, rng)
    correct = _function(prompt + solution, task.name)
    expected = [correct(*_copy(args)) for args in inputs]

    def fails(text: str) -> bool:
        return _fails(_function(prompt + text, task.name), inputs, expected)

    chosen = _choose_mutants(_mutants_by_kind(task.body, solution), rng, n_incorrect, fails)
    if len(chosen) < n_incorrect:
        return None
    tests = [
        f"assert {task.name}({', '.join(map(repr, args))}) == {want!r}"
        for args, want in zip(inputs, expected, strict=True)
    ]
    return TinyCodeProblem(
        task_id="",
        family=family,
        pairs=spec.pairs(params),
        prompt=prompt,
        entry_point=task.name,
        solution=solution,
        incorrect_solutions=[t for t, _ in chosen],
        mutations=[m for _, m in chosen],
        tests=list(dict.fromkeys(tests)),
    )


# Splits and sampling -----------------------------------------------------------------------------


@functools.cache
def _params(family: str) -> tuple[tuple, ...]:
    return tuple(FAMILIES[family].params())


@functools.lru_cache(maxsize=64)
def held_out(family: str, seed: int, holdout: float) -> frozenset[tuple[str, str]]:
    """The (operator, constant) pairs of ``family`` that only the test split uses.

    A drawn pair is skipped if holding it out would leave its operator or its constant with no
    train pair, so train shows every operator and constant of the family at least once.
    """
    universe = sorted(set(FAMILIES[family].universe))
    rng = random.Random(f"{seed}/holdout/{family}")
    rng.shuffle(universe)
    target = round(holdout * len(universe))
    kept_ops = {op: sum(1 for o, _ in universe if o == op) for op, _ in universe}
    kept_ks = {k: sum(1 for _, c in universe if c == k) for _, k in universe}
    out: set[tuple[str, str]] = set()
    for op, k in universe:
        if len(out) == target:
            break
        if kept_ops[op] > 1 and kept_ks[k] > 1:
            out.add((op, k))
            kept_ops[op] -= 1
            kept_ks[k] -= 1
    return frozenset(out)


def split_of(family: str, params: tuple, seed: int, holdout: float) -> str:
    held = held_out(family, seed, holdout)
    return "test" if any(pair in held for pair in FAMILIES[family].pairs(params)) else "train"


def _permutation(n: int, rng: random.Random) -> Iterator[int]:
    """0..n-1 in random order, without shuffling a long list when only its start is read (piecewise
    has about 250,000 problems, of which a few hundred are drawn)."""
    seen: set[int] = set()
    while len(seen) < n // 2:
        i = rng.randrange(n)
        if i not in seen:
            seen.add(i)
            yield i
    rest = [i for i in range(n) if i not in seen]
    rng.shuffle(rest)
    yield from rest


def _draws(family: str, split: str, seed: int, holdout: float, n_incorrect: int) -> Iterator[TinyCodeProblem]:
    params_list = _params(family)
    for index in _permutation(len(params_list), random.Random(f"{seed}/{split}/{family}")):
        params = params_list[index]
        if split_of(family, params, seed, holdout) == split:
            problem = build_problem(family, params, seed, n_incorrect)
            if problem is not None:
                yield problem


@functools.lru_cache(maxsize=16)
def _generate(split: str, n: int, seed: int, n_incorrect: int, holdout: float) -> tuple[TinyCodeProblem, ...]:
    streams = {family: _draws(family, split, seed, holdout, n_incorrect) for family in FAMILIES}
    rng = random.Random(f"{seed}/{split}/order")
    out: list[TinyCodeProblem] = []
    while streams and len(out) < n:
        turn = sorted(streams)
        rng.shuffle(turn)
        for family in turn:
            if len(out) == n:
                break
            problem = next(streams[family], None)
            if problem is None:
                del streams[family]
                continue
            out.append(dataclasses.replace(problem, task_id=f"{SOURCE}/{split}/{len(out)}"))
    if len(out) < n:
        raise UsageError(
            f"tiny-code has only {len(out)} {split} problems for seed {seed} and holdout {holdout}; ask for fewer"
        )
    return tuple(out)


def generate(
    split: str = "train",
    n: int | None = None,
    *,
    seed: int = DEFAULTS["seed"],
    n_incorrect: int = DEFAULTS["n_incorrect"],
    holdout: float = DEFAULTS["holdout"],
) -> list[TinyCodeProblem]:
    """The first ``n`` problems of ``split`` (default: ``n_train`` or ``n_test`` of :data:`DEFAULTS`)."""
    if split not in SPLITS:
        raise UsageError(f"tiny-code has splits {' and '.join(SPLITS)}, not {split!r}")
    if not 0 < holdout < 1:
        raise UsageError(f"tiny-code holdout must be between 0 and 1, not {holdout}")
    if n_incorrect < 0:
        raise UsageError(f"tiny-code n_incorrect must be at least 0, not {n_incorrect}")
    n = DEFAULTS[f"n_{split}"] if n is None else n
    return list(_generate(split, n, seed, n_incorrect, float(holdout)))


# Through DataConfig ------------------------------------------------------------------------------


def options(subset: str | None) -> dict[str, Any]:
    """``data.subset`` (``"seed=1,n_train=500"``) as generator options over :data:`DEFAULTS`."""
    out = dict(DEFAULTS)
    for item in (subset or "").split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in DEFAULTS or not value.strip():
            raise UsageError(
                f"data.subset {subset!r}: tiny-code takes comma-separated key=value options, keys "
                f"{', '.join(DEFAULTS)} (e.g. 'seed=1,n_train=500')"
            )
        try:
            out[key] = type(DEFAULTS[key])(value.strip())
        except ValueError:
            kind = "a whole number" if isinstance(DEFAULTS[key], int) else "a number"
            raise UsageError(f"data.subset {subset!r}: {key} must be {kind}") from None
    return out


def _problems(config) -> list[TinyCodeProblem]:
    if config.path is not None:
        raise UsageError("data.path is not used by data.source=tiny-code (its problems are generated); leave it null")
    opts = options(config.subset)
    n = opts[f"n_{config.split}"] if config.split in SPLITS else None
    return generate(config.split, n, seed=opts["seed"], n_incorrect=opts["n_incorrect"], holdout=opts["holdout"])


def tiny_code_rows(config) -> list[dict[str, Any]]:
    """The raw rows (schema ``tiny_code``) for ``config`` (a :class:`~wmtp_cli.config.schema.DataConfig`)."""
    return [problem.row() for problem in _problems(config)]


def tiny_code_mutations(config) -> dict[str, dict[str, Mutation]]:
    """task_id -> {incorrect completion -> its :class:`Mutation`} for ``load_problems(config)``'s problems.

    Keyed by text so that it holds whatever ``data.limit`` and ``data.max_solutions`` kept.
    """
    return {
        p.task_id: {text: dict(m) for text, m in zip(p.incorrect_solutions, p.mutations, strict=True)}  # type: ignore[misc]
        for p in _problems(config)
    }

"""Which names test code reads and program text defines: what the tests take from the program.

Used by the judge (inside the sandbox) and by :func:`wmtp_cli.execution.jobs.job_for` (outside).
Stdlib only.
"""

import ast
import warnings


def parse(source):
    """``ast.parse`` without the warnings of the text's own (``'\\w'`` in a test's string, for one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source)


def loaded_names(sources):
    """Every name the code in ``sources`` reads, function bodies included; None if one does not parse."""
    names = set()
    for source in sources:
        try:
            tree = parse(source)
        except (SyntaxError, ValueError):
            return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                names.add(node.id)
    return names


def stub_names(source):
    """Top-level functions of ``source`` whose body is only a docstring, ``pass``, ``...`` or imports: the
    signatures a prompt gives of the functions a program is to write (HumanEval's entry point)."""
    try:
        tree = parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and all(isinstance(s, (ast.Pass, ast.Import, ast.ImportFrom))
                or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in node.body)
    }  # fmt: skip


def entry_points(prefix, reference, setup, statements):
    """The names the tests take from the program, as the trusted reference solution shows them: what
    ``prefix + reference`` defines and the tests read, less what the prefix defines in full already
    (helpers the prompt gives stay trusted; a function the reference goes on to complete does not).
    None when some text does not parse."""
    read = loaded_names([setup, *statements])
    before, after = _top_level(prefix), _top_level(prefix + reference)
    if read is None or after is None:
        return None
    trusted = {name for name, dump in (before or {}).items() if after.get(name) == dump}
    return sorted((set(after) - trusted) & read)


def _top_level(source):
    """Each top-level definition of ``source`` (name -> a dump of its AST); None if it does not parse."""
    try:
        tree = parse(source)
    except (SyntaxError, ValueError):
        return None
    found = {}
    for node in tree.body:
        for name in _bound(node):
            found[name] = ast.dump(node)
    return found


def _bound(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    return []

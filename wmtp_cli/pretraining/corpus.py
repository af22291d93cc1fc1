"""The pretraining corpus: the recipe's problems with their correct solutions, and Python's own source.

Every machine with Python has its standard library's source, so a model can learn Python's
syntax and idioms offline; the problems (``data``, e.g. tiny-code's train split) teach the task
format. Texts are cut at line ends into pieces of at most ``max_chars`` characters, so that each
becomes one training row once tokenised.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

from wmtp_cli.config import Recipe


def stdlib_sources(max_bytes: int) -> Iterator[str]:
    """Source files of the standard library, in a fixed order, up to ``max_bytes`` in all (tests left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    used = 0
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if used >= max_bytes:
            return
        if path.parent.name in ("test", "tests", "idle_test") or path.name.startswith("test_"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = text[: max_bytes - used]
        used += len(text.encode())
        yield text


def pieces(text: str, max_chars: int) -> Iterator[str]:
    """``text`` cut after line ends into pieces of at most ``max_chars`` characters (a longer line is cut)."""
    piece: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:
            if piece:
                yield "".join(piece)
                piece, size = [], 0
            yield line[:max_chars]
            line = line[max_chars:]
        if size + len(line) > max_chars and piece:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += len(line)
    if piece:
        yield "".join(piece)


def corpus_texts(recipe: Recipe, max_chars: int) -> list[str]:
    """Problem texts (prompt + each correct solution) and standard-library pieces, for training and the tokenizer.

    Every problem of ``data``'s split is used: ``data.limit`` picks the problems of the later stages
    (scoring, fine-tuning), so a recipe can pretrain on a whole split and fine-tune on part of it.
    """
    import dataclasses

    from wmtp_cli.data.sources import load_problems

    problems = load_problems(dataclasses.replace(recipe.data, limit=None), seed=recipe.run.seed)
    texts = [problem["prompt"] + solution for problem in problems for solution in problem["solutions"]]
    for source in stdlib_sources(int(recipe.pretrain.stdlib_mb * 1_000_000)):
        texts.extend(pieces(source, max_chars))
    return texts

"""A tiny SentencePiece model trained with Llama 2's settings, for tests that need a ``tokenizer.model``.

Training on the ``json`` package's source takes a fraction of a second and is deterministic (one
thread, no sampling, no shuffling), so every test run sees the same pieces and scores.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm


def _training_lines() -> Iterator[str]:
    import json

    folder = os.path.dirname(json.__file__)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as file:
                for line in file:
                    line = line.rstrip("\n")
                    if line.strip():
                        yield line
    # A few lines outside ASCII, so multi-byte pieces exist; rarer characters stay byte fallback.
    yield from ["café déjà vu — naïve", "日本語のテキスト", "Ünïcödé strings: é è ê ë"] * 3


def train_tiny_sentencepiece(path: Path, vocab_size: int = 400, **overrides) -> Path:
    """Train a BPE ``tokenizer.model`` like Llama 2's (byte fallback, identity normalisation) at ``path``.

    ``overrides`` replace or add ``SentencePieceTrainer.train`` options (e.g. another normalisation).
    """
    path = Path(path)
    options = dict(
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        max_sentence_length=16384,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    options.update(overrides)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=_training_lines(), model_writer=model, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path

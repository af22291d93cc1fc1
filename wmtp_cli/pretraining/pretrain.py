"""``wmtp pretrain``: train a small multi-token-prediction model from scratch, on CPU in minutes.

1. The corpus (:mod:`wmtp_cli.pretraining.corpus`): the recipe's problems with their correct
   solutions (e.g. tiny-code's train split) and ``pretrain.stdlib_mb`` of the standard library.
2. A byte-level BPE tokenizer of ``pretrain.vocab_size`` trained on it.
3. A randomly initialised MTP model (``pretrain.trunk_layers`` trunk blocks, ``pretrain.n_future``
   heads) trained with the uniform MTP loss, through the same machinery as ``wmtp train-wmtp``
   (checkpoints, ``--resume``, metrics, accelerate): the corpus becomes examples with an empty
   prompt, so every token after BOS is trained.

The model folder goes to ``model.path`` (so the later stages of the same recipe use it) with
``pretrain.json`` recording the settings that made it; a second run with the same settings finds it
and does nothing. The working files (corpus, initial model, checkpoints, metrics) are under
``<run folder>/pretrain``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from wmtp_cli.config import ModelConfig, Recipe, WMTPConfig, recipe_to_dict, save_resolved_recipe
from wmtp_cli.data.scored import scored_row, write_scored
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_directory, atomic_write_text, check_output, check_replaceable
from wmtp_cli.runs import RUN_FOLDER, run_folder

logger = logging.getLogger(__name__)

MARKER = "pretrain.json"
CHARS_PER_TOKEN = 3  # code under a small BPE vocabulary; pieces a bit longer than a row are cut by truncation


@dataclass
class PretrainResult:
    model_dir: Path
    cached: bool
    steps: int
    last: dict[str, float]


def pretrain_key(recipe: Recipe) -> str:
    settings = recipe_to_dict(recipe)
    data = {**settings["data"], "limit": None}  # the corpus reads the whole split (see corpus_texts)
    # format 2: the folder carries its modeling code and auto_map (a format-1 folder is pretrained again)
    relevant = {"pretrain": settings["pretrain"], "data": data, "seed": recipe.run.seed, "format": 2}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _cached(model_dir: Path, key: str, force: bool) -> bool:
    """Whether ``model_dir`` holds this pretraining already; refuses, before any work, what cannot be replaced."""
    check_output(model_dir, "model.path", kind="folder")
    if not model_dir.exists():
        return False
    if not force and _marker_key(model_dir) == key:
        return True
    if not force:
        raise UsageError(
            f"model.path {model_dir} already exists and was not pretrained with these settings: pass --force to "
            "replace it, or point model.path elsewhere"
        )
    check_replaceable(model_dir, "model.path", MARKER)
    return False


def _marker_key(model_dir: Path) -> str | None:
    try:
        return json.loads((model_dir / MARKER).read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):  # no marker, or one that is not ours
        return None


def _initial_model(recipe: Recipe, tokenizer, folder: Path) -> None:
    from wmtp_cli.model import MTPConfig, MTPForCausalLM

    p = recipe.pretrain
    config = MTPConfig(
        vocab_size=len(tokenizer), hidden_size=p.hidden_size, intermediate_size=p.intermediate_size,
        num_hidden_layers=p.trunk_layers + p.n_future, num_attention_heads=p.attention_heads,
        n_future_tokens=p.n_future, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # the longest rows it trains on, here or fine-tuned with this recipe: its context (inspect-weights windows)
        max_position_embeddings=max(p.max_length, recipe.data.max_length),
    )  # fmt: skip
    torch.manual_seed(recipe.run.seed)
    model = MTPForCausalLM(config)
    with atomic_directory(folder, force=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def pretrain(recipe: Recipe, resume: bool = False, force: bool = False, progress=None) -> PretrainResult:
    """Build the corpus and tokenizer, then train the model; see the module docstring."""
    from wmtp_cli.pretraining.corpus import corpus_texts
    from wmtp_cli.pretraining.tokenizer import train_tokenizer
    from wmtp_cli.training import train_wmtp

    if recipe.model is None:
        raise UsageError("wmtp pretrain writes the model to model.path: give the recipe a model section")
    p, key = recipe.pretrain, pretrain_key(recipe)
    model_dir = Path(recipe.model.path)
    if _cached(model_dir, key, force):
        logger.info("%s was pretrained with these settings already", model_dir)
        return PretrainResult(model_dir, True, 0, {})

    work = check_output(run_folder(recipe) / "pretrain", RUN_FOLDER, kind="folder")
    corpus_dir, init_dir = work / "corpus", work / "init"
    if not (resume and corpus_dir.exists() and init_dir.exists()):
        if progress:
            progress("corpus", 0, 1)
        texts = corpus_texts(recipe, p.max_length * CHARS_PER_TOKEN)
        if not texts:
            raise UsageError("the pretraining corpus is empty: give data problems with solutions or stdlib_mb > 0")
        tokenizer = train_tokenizer(texts, p.vocab_size)
        # The corpus is a scored data set (every text a completion with reward 1), so train-wmtp trains on it.
        write_scored([scored_row(str(i), "pretrain", "", text, reward=1.0) for i, text in enumerate(texts)], corpus_dir)
        _initial_model(recipe, tokenizer, init_dir)
        if progress:
            progress("corpus", 1, 1)

    data = dataclasses.replace(recipe.data, scored=str(corpus_dir), max_length=p.max_length, truncation="right")
    loop = WMTPConfig(
        weighting="uniform", lambda_vf=0.0, lr=p.lr, warmup_steps=p.warmup_steps, max_steps=p.max_steps,
        batch_size=p.batch_size, grad_accum=1, grad_clip=1.0, weight_decay=0.1,
        memory_efficient_heads=False,  # a small model's logits fit anyway, and the head loop's recompute costs time
    )  # fmt: skip
    run = dataclasses.replace(recipe.run, push_to_hub=None)  # the model pushed would be this working copy
    training = dataclasses.replace(
        recipe, model=ModelConfig(path=str(init_dir), dtype="fp32"), data=data, wmtp=loop, run=run
    )
    result = train_wmtp(training, resume=resume, force=not resume, progress=progress, run_dir=work / "train")

    with atomic_directory(model_dir, force=True) as tmp:
        for item in result.final_dir.iterdir():
            if item.is_file() and not item.name.startswith("value_head"):
                shutil.copy2(item, tmp / item.name)
        atomic_write_text(tmp / MARKER, json.dumps({"key": key, "steps": result.steps, **result.last}, indent=2))
    save_resolved_recipe(recipe, work)
    return PretrainResult(model_dir, False, result.steps, result.last)

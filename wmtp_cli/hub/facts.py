"""What a model folder written by wmtp says about itself, for its model card: how it was made, from which base
model (and so under which licence), on what data, with which recipe, and the eval results written for it.

Read from the files the toolkit leaves in and near the folder, nothing else:

- ``conversion.json``: ``wmtp download`` converted Meta's checkpoint (the hub repo and variant, or a local copy).
- ``pretrain.json``: ``wmtp pretrain`` trained it from scratch.
- ``recipe.yaml`` (``save_resolved_recipe``): ``wmtp train-wmtp`` fine-tuned ``model.path`` with this recipe; that
  folder, when it is here, says in turn where it came from.
- ``adapter_config.json``: peft's LoRA adapter (``wmtp.lora_save``), in the folder itself or in ``adapter/``.
- eval summaries (``wmtp eval``'s JSON: ``benchmark``, ``pass_at_k``, ``settings.model``) in the folder, in
  ``eval/`` beside or above it (where ``wmtp compare`` and ``wmtp eval RECIPE`` write them), whose model is this
  folder; and any given explicitly.

Imports no torch: ``wmtp push`` uploads files and needs none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META_REPO = "facebook/multi-token-prediction"
RECIPE_FILE = "recipe.yaml"  # what save_resolved_recipe writes beside an output
CONVERSION_FILE = "conversion.json"  # wmtp download (convert/meta_checkpoint.py)
PRETRAIN_FILE = "pretrain.json"  # wmtp pretrain (pretraining/pretrain.py)
ADAPTER_CONFIG = "adapter_config.json"  # peft (model/adapter.py)
VALUE_HEAD_FILE = "value_head.safetensors"  # critic/value_head.py
MAX_BASE_CHAIN = 8  # fine-tuned from a fine-tuned model from ...: how far back the origin is looked for


@dataclass(frozen=True)
class Licence:
    """The hub's licence metadata (``license``, ``license_name``, ``license_link``) and what the card says of it."""

    id: str
    name: str | None
    link: str | None
    terms: str


META_LICENCE = Licence(
    "other",
    "multi-token-prediction-research-license",
    f"https://huggingface.co/{META_REPO}",
    f"Meta's weights in [{META_REPO}](https://huggingface.co/{META_REPO}) are released under Meta's Multi-token "
    "Prediction Research License (18 June 2024): non-commercial research use, gated on the hub. A model derived "
    "from them is under the same terms: accept that licence before using it, and read its conditions on "
    "redistribution before making this repository public.",
)


@dataclass(frozen=True)
class Origin:
    """Where a model's weights come from first: Meta's checkpoint, ``wmtp pretrain``, a hub model, or unknown."""

    kind: str  # meta | pretrained | hub | unknown
    described: str  # one sentence, Markdown
    hub_id: str | None = None  # the hub model it derives from, for the card's base_model
    licence: Licence | None = None
    variant: str | None = None  # Meta's checkpoint: which one (7B_1T_4, ...)


@dataclass
class ModelFacts:
    folder: Path
    made_by: str  # train-wmtp | download | pretrain | unknown
    origin: Origin  # where the weights come from first (for train-wmtp: the base model's origin)
    base_path: str | None = None  # train-wmtp: the recipe's model.path
    recipe_text: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # config.json (the base model's, for an adapter alone)
    adapter: str | None = None  # None, "alone" (the folder is peft's adapter) or "beside" (in adapter/)
    value_head: bool = False
    evals: list[dict[str, Any]] = field(default_factory=list)  # wmtp eval summaries, each with its "file"

    def section(self, name: str) -> dict[str, Any]:
        """A section of the recipe (empty when there is none)."""
        return self.recipe.get(name) or {}

    @property
    def n_future(self) -> int | None:
        return self.config.get("n_future_tokens")

    @property
    def loads_without_wmtp(self) -> bool:
        """The folder carries its modeling code (``auto_map``), so ``trust_remote_code=True`` loads it anywhere."""
        return bool(self.config.get("auto_map")) and self.adapter != "alone"


def read_facts(folder: Path, eval_files: tuple[Path, ...] = ()) -> ModelFacts:
    """The facts of the model folder ``folder``; ``eval_files`` are eval summaries to report besides those found."""
    folder = Path(folder)
    made_by = _made_by(folder)
    facts = ModelFacts(folder, made_by, origin_of(folder))
    facts.recipe_text = _read_text(folder / RECIPE_FILE)
    facts.recipe = _yaml(facts.recipe_text)
    facts.config = _json(folder / "config.json") or {}
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        facts.adapter = "alone"
    elif (folder / "adapter" / ADAPTER_CONFIG).is_file():
        facts.adapter = "beside"
    if made_by == "train-wmtp":
        facts.base_path = (facts.section("model") or {}).get("path")
        if not facts.config and facts.base_path:  # an adapter alone: the shape is the base model's
            facts.config = _json(Path(facts.base_path).expanduser() / "config.json") or {}
    facts.value_head = (folder / VALUE_HEAD_FILE).is_file()
    facts.evals = [*find_evals(folder), *(_eval_summary(Path(f), required=True) for f in eval_files)]
    return facts


def _made_by(folder: Path) -> str:
    if (folder / CONVERSION_FILE).is_file():
        return "download"
    if (folder / PRETRAIN_FILE).is_file():  # pretrain copies its training run's recipe.yaml too: check this first
        return "pretrain"
    if (folder / RECIPE_FILE).is_file():
        return "train-wmtp"
    return "unknown"


def origin_of(folder: Path, depth: int = 0) -> Origin:
    """Where the weights of the model folder ``folder`` come from first, following fine-tuned models to their base."""
    made_by = _made_by(folder)
    if made_by == "download":
        record = _json(folder / CONVERSION_FILE) or {}
        variant = record.get("variant") or Path(str(record.get("source", ""))).name or "a variant"
        if record.get("origin") == "hub":
            repo = record.get("repo_id") or META_REPO
            where = f"[{repo}](https://huggingface.co/{repo}), variant `{variant}`"
        else:
            repo, where = META_REPO, f"a local copy in Meta's layout (variant `{variant}`)"
        return Origin("meta", f"Meta's multi-token-prediction checkpoint from {where}, converted by `wmtp download`.",
                      repo, META_LICENCE, variant)  # fmt: skip
    if made_by == "pretrain":
        return Origin("pretrained", "Pretrained from scratch (random initialisation, no third-party weights) by "
                      "`wmtp pretrain`, with a byte-level BPE tokenizer trained on its corpus.")  # fmt: skip
    if made_by == "train-wmtp" and depth < MAX_BASE_CHAIN:
        base = (_yaml(_read_text(folder / RECIPE_FILE)).get("model") or {}).get("path")
        if base:
            return base_origin(str(base), depth + 1)
    return Origin("unknown", "Its origin is not recorded in the folder.")


def base_origin(path: str, depth: int = 1) -> Origin:
    """The origin of the base model ``path`` (a recipe's model.path): a local folder's own, or a hub model's."""
    local = Path(path).expanduser()
    if local.is_dir():
        origin = origin_of(local, depth)
        if origin.kind != "unknown":
            return origin
        return Origin("unknown", f"The base model is the local folder `{path}`; its origin is not recorded.")
    if path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return Origin("hub", f"The base model is [{path}](https://huggingface.co/{path}); see its card for its "
                      "licence.", path)  # fmt: skip
    return Origin("unknown", f"The base model was `{path}`, which is not here to say where it came from.")


def find_evals(folder: Path) -> list[dict[str, Any]]:
    """``wmtp eval`` summaries of this model: JSON files in ``folder`` itself, and in ``eval/`` inside, beside (as
    ``wmtp compare`` writes) or above it (``wmtp eval RECIPE --model ...``) whose ``settings.model`` is ``folder``."""
    found: dict[Path, dict[str, Any]] = {}
    here = folder.resolve()
    places = [(folder, False), (folder / "eval", True), (folder.parent / "eval", True),
              (folder.parent.parent / "eval", True)]  # fmt: skip
    for place, must_name_it in places:
        for file in sorted(place.glob("*.json")) if place.is_dir() else []:
            summary = _eval_summary(file)
            if summary is None or file.resolve() in found:
                continue
            model = (summary.get("settings") or {}).get("model")
            if must_name_it and (not model or Path(model).expanduser().resolve() != here):
                continue
            found[file.resolve()] = summary
    return list(found.values())


def _eval_summary(file: Path, required: bool = False) -> dict[str, Any] | None:
    """The eval summary in ``file`` with its path under ``file``; None (or, ``required``, an error) if it is not one."""
    from wmtp_cli.errors import UsageError

    data = _json(file)
    if isinstance(data, dict) and isinstance(data.get("pass_at_k"), dict) and "benchmark" in data:
        return {**data, "file": str(file)}
    if required:
        raise UsageError(f"--eval {file} is not a `wmtp eval` summary (a JSON file with benchmark and pass_at_k)")
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None


def _yaml(text: str | None) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}

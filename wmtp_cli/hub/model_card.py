"""The model card (the hub repo's ``README.md``) of a model folder, written from its :class:`ModelFacts`.

Metadata (huggingface_hub's ``ModelCardData``): ``base_model`` when the weights derive from a hub model,
``license`` (Meta's research licence for models derived from Meta's checkpoints), ``library_name``
(``transformers``, or ``peft`` for an adapter alone), ``pipeline_tag: text-generation``, tags and the hub data
sets the model was trained on. Sections: what the model is, its base model and licence terms, training data,
the recipe (key settings and the whole resolved ``recipe.yaml``), the weighting, eval figures, and how to load it
(with wmtp, with transformers alone when the folder carries its modeling code, as a Llama model through
``wmtp export``, the LoRA adapter with peft, the critic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmtp_cli.hub.facts import ModelFacts, read_facts

PAPER = "Gloeckle et al. 2024, [Better & Faster Large Language Models via Multi-token Prediction](https://arxiv.org/abs/2404.19737)"
# The recipe keys a reader looks for first, in this order; the whole recipe follows in a folded block.
KEY_SETTINGS = (
    ("wmtp", "weighting"), ("wmtp", "temperature"), ("wmtp", "lambda_vf"), ("wmtp", "lr"), ("wmtp", "max_steps"),
    ("wmtp", "batch_size"), ("wmtp", "grad_accum"), ("wmtp", "lora_r"), ("wmtp", "lora_save"),
    ("critic", "return_target"), ("reward", "source"), ("data", "max_length"), ("run", "seed"),
)  # fmt: skip


def build_model_card(folder: str | Path, repo_id: str, eval_files: tuple[Path, ...] = ()) -> str:
    """The ``README.md`` text for ``folder`` pushed to ``repo_id``; ``eval_files`` add eval summaries."""
    return render_card(read_facts(Path(folder), eval_files), repo_id)


def render_card(facts: ModelFacts, repo_id: str) -> str:
    from huggingface_hub import ModelCard

    sections = [
        f"# {repo_id.split('/')[-1]}\n\n{_summary(facts)}",
        f"## Base model and licence\n\n{_base_and_licence(facts)}",
        f"## Training data\n\n{_data(facts)}",
        f"## Training recipe\n\n{_recipe(facts)}",
        f"## Weighting\n\n{_weighting(facts)}",
        f"## Evaluation\n\n{_evals(facts)}",
        f"## How to load it\n\n{_loading(facts, repo_id)}",
        f"## References\n\n{PAPER}. Made with WMTP (the `wmtp_cli` package and its `wmtp` command), a toolkit for "
        "critic-weighted multi-token-prediction fine-tuning.",
    ]
    return str(ModelCard(f"---\n{_metadata(facts).to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"))


def _metadata(facts: ModelFacts):
    from huggingface_hub import ModelCardData

    licence, alone = facts.origin.licence, facts.adapter == "alone"
    weighting = facts.section("wmtp").get("weighting") if facts.made_by == "train-wmtp" else None
    tags = ["wmtp", "multi-token-prediction", *([f"wmtp-{weighting}"] if weighting else [])]
    tags += ["lora"] if facts.adapter else []
    relation = {"train-wmtp": "adapter" if alone else "finetune"}.get(facts.made_by)
    return ModelCardData(
        base_model=facts.origin.hub_id, base_model_relation=relation if facts.origin.hub_id else None,
        license=licence.id if licence else None, license_name=licence.name if licence else None,
        license_link=licence.link if licence else None, library_name="peft" if alone else "transformers",
        pipeline_tag="text-generation", tags=tags, datasets=_hub_datasets(facts) or None,
    )  # fmt: skip


def _hub_datasets(facts: ModelFacts) -> list[str]:
    """The hub data sets the recipe read: a benchmark's own (data.path null) or data.source=hub's data.path."""
    from wmtp_cli.data.sources import SOURCES

    data = facts.section("data")
    source = SOURCES.get(str(data.get("source")))
    if source is None or facts.made_by not in ("train-wmtp", "pretrain"):
        return []
    if source.path_is_hub_name and data.get("path"):
        return [str(data["path"])]
    return [source.hub[0]] if source.hub and not data.get("path") else []


def _shape(config: dict[str, Any]) -> str:
    if not config.get("n_future_tokens"):
        return ""
    n, layers = config["n_future_tokens"], config.get("num_hidden_layers", 0)
    return (
        f" Shape: width {config.get('hidden_size')}, {layers - n} trunk blocks and {n} head blocks, a vocabulary of "
        f"{config.get('vocab_size')} tokens."
    )


def _summary(facts: ModelFacts) -> str:
    n = facts.n_future
    heads = f" with {n} heads (head 1 predicts the next token, head k the token k steps ahead)" if n else ""
    if facts.made_by == "train-wmtp":
        w = facts.section("wmtp")
        lora = f", with LoRA adapters of rank {w['lora_r']}" if w.get("lora_r") else ""
        text = (f"A multi-token-prediction language model{heads}, fine-tuned by WMTP's `wmtp train-wmtp` with "
                f"`{w.get('weighting', 'critic')}` weighting{lora}.")  # fmt: skip
    elif facts.made_by == "download":
        text = f"Meta's multi-token-prediction language model{heads}, converted to a transformers folder."
    elif facts.made_by == "pretrain":
        text = f"A multi-token-prediction language model{heads}, pretrained from scratch by `wmtp pretrain`."
    else:
        text = f"A multi-token-prediction language model{heads}."
    if facts.adapter == "alone":
        text += " This repository holds its LoRA adapter alone (peft's format), to load onto the base model."
    return text + _shape(facts.config)


def _base_and_licence(facts: ModelFacts) -> str:
    origin, lines = facts.origin, []
    if facts.made_by == "train-wmtp" and facts.base_path:
        lines.append(f"Fine-tuned from `{facts.base_path}` (`model.path` of the recipe). {origin.described}")
    else:
        lines.append(origin.described)
    if origin.licence is not None:
        lines.append(origin.licence.terms)
    elif origin.kind == "pretrained":
        lines.append("No third-party weights are involved; the licence of these weights is their author's to choose.")
    elif origin.kind == "hub":
        lines.append("The base model's licence applies to this model: see its card.")
    else:
        lines.append("No licence is recorded: check the base model's terms before sharing this model.")
    return "\n\n".join(lines)


def _data(facts: ModelFacts) -> str:
    from wmtp_cli.data.sources import SOURCES

    if facts.made_by == "download":
        return f"Meta's pretraining data (code; see {PAPER}). `wmtp download` converts the weights and trains nothing."
    data = facts.section("data")
    if not data:
        return "Not recorded with the model."
    source = str(data.get("source"))
    described = SOURCES[source].help if source in SOURCES else source
    parts = [f"`data.source: {source}` ({described}), split `{data.get('split', 'train')}`"]
    parts += [f"`data.{key}: {data[key]}`" for key in ("path", "subset", "limit") if data.get(key) is not None]
    text = "; ".join(parts) + "."
    if facts.made_by == "pretrain":
        mb = facts.section("pretrain").get("stdlib_mb")
        return (f"The problems of {text[:-1]}, with their correct solutions, and {mb} MB of the Python standard "
                "library's own source.")  # fmt: skip
    reward = facts.section("reward").get("source")
    return text + (f" Rewards: `reward.source: {reward}` (scored by `wmtp score`)." if reward else "")


def _recipe(facts: ModelFacts) -> str:
    if not facts.recipe_text:
        return "No recipe is recorded with the model (it was not trained by wmtp, or its `recipe.yaml` is gone)."
    rows = [f"| `{s}.{k}` | `{facts.section(s)[k]}` |" for s, k in KEY_SETTINGS if facts.section(s).get(k) is not None]
    table = "| key | value |\n|---|---|\n" + "\n".join(rows) + "\n\n" if rows else ""
    return (
        f"{table}The resolved recipe (defaults and overrides applied), `recipe.yaml` in this repository; "
        f"`run_info.json` records the versions and command line that ran it.\n\n<details><summary>recipe.yaml"
        f"</summary>\n\n```yaml\n{facts.recipe_text.rstrip()}\n```\n\n</details>"
    )


def _weighting(facts: ModelFacts) -> str:
    from wmtp_cli.weightings import WEIGHTINGS

    if facts.made_by == "pretrain":
        return "Pretrained with the plain multi-token-prediction loss: every head's cross-entropy weighted equally."
    if facts.made_by != "train-wmtp":
        return "Not fine-tuned by wmtp: no per-token weighting."
    w = facts.section("wmtp")
    name = str(w.get("weighting", "critic"))
    weighting = WEIGHTINGS.get(name)
    described = weighting.help if weighting else "a weighting registered outside wmtp"
    text = f"`wmtp.weighting: {name}`: {described}. The loss is each head's cross-entropy, weighted per token"
    if weighting is None or not weighting.uses_critic:
        return text + "."
    return text + (
        f", plus lambda_vf = {w.get('lambda_vf', 0.1)} times the critic's value loss (L_WMTP + lambda_vf * L_VF). "
        f"The weights are w = softmax(delta / tau) over the heads that have a target, with tau = "
        f"{w.get('temperature', 1.0)} and delta the change in the critic's value V(h_t) at each future token."
    )


def _evals(facts: ModelFacts) -> str:
    if not facts.evals:
        return ("None found with this folder (a `wmtp eval` summary of it in `eval/` beside or above it, or one given "
                "to `wmtp push --eval`).")  # fmt: skip
    ks = sorted({k for e in facts.evals for k in e["pass_at_k"]}, key=lambda k: int(k) if str(k).isdigit() else 0)
    head = "| benchmark | problems | samples per problem | temperature | " + " | ".join(f"pass@{k}" for k in ks) + " |"
    rows = [head, "|---" * (4 + len(ks)) + "|"]
    for e in facts.evals:
        settings = e.get("settings") or {}
        per_problem = e.get("n_samples", 0) // max(e.get("n_problems", 0), 1)
        figures = [f"{e['pass_at_k'][k]:.4f}" if k in e["pass_at_k"] else "" for k in ks]
        rows.append(f"| {e['benchmark']} | {e.get('n_problems', '')} | {per_problem} | "
                    f"{settings.get('temperature', '')} | " + " | ".join(figures) + " |")  # fmt: skip
    return "pass@k (the unbiased estimator of Chen et al. 2021), from `wmtp eval`:\n\n" + "\n".join(rows)


def _loading(facts: ModelFacts, repo_id: str) -> str:
    if facts.adapter == "alone":
        return _adapter_alone(facts, repo_id)
    parts = [
        "### With wmtp\n\n```python\nimport wmtp_cli  # makes the multi-token-prediction architecture known to "
        "transformers\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
        'ids = tokenizer("def fib(n):", return_tensors="pt").input_ids\n'
        "logits = model(ids, return_all_heads=True).logits  # (batch, tokens, heads, vocabulary); [:, :, 0] is head 1"
        "\ntext = tokenizer.decode(model.generate(ids, max_new_tokens=64)[0])\n```\n\n"
        "This needs the wmtp toolkit (the `wmtp_cli` package) installed; its commands (`wmtp eval --model`, ...) "
        f"take the downloaded folder (`hf download {repo_id} --local-dir model`).",
        _without_wmtp(facts, repo_id),
        "### As a Llama model\n\nThe trunk, head 1 and the shared norm and unembedding are exactly a Llama model. "
        "`wmtp export` writes them as a plain `LlamaForCausalLM` folder that vLLM, TGI and llama.cpp's converter "
        "take as is (next-token prediction only; the other heads are left out):\n\n"
        f"```bash\nhf download {repo_id} --local-dir model\nwmtp export model --to llama --out model-llama\n```",
    ]
    if facts.adapter == "beside":
        parts.append(_adapter_beside(facts, repo_id))
    if facts.value_head:
        parts.append(_critic(repo_id))
    return "\n\n".join(parts)


def _without_wmtp(facts: ModelFacts, repo_id: str) -> str:
    if facts.loads_without_wmtp:
        return (
            "### With transformers alone\n\nThe repository carries its modeling code (`auto_map` in `config.json`), "
            "so no wmtp install is needed; read the code before trusting it:\n\n```python\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)\n```'
        )
    return (
        "### With transformers alone\n\nThis folder carries no modeling code (no `auto_map` in `config.json`): "
        "load it with wmtp installed, as above, or export it as a Llama model."
    )


def _base_model(facts: ModelFacts) -> tuple[str, str]:
    """How a reader gets the base model as a transformers folder: (a step before, in Markdown, or ""; its path)."""
    origin = facts.origin
    if origin.kind == "meta":  # Meta's repo is in Meta's layout: it loads once converted
        return (f"Convert it first: `wmtp download {origin.hub_id} --variant {origin.variant} --out base` "
                "(accept Meta's licence on the hub and set HF_TOKEN).\n\n", "base")  # fmt: skip
    if origin.kind == "hub":
        return "", str(origin.hub_id)
    return "", facts.base_path or "BASE_MODEL"


def _adapter_beside(facts: ModelFacts, repo_id: str) -> str:
    step, base = _base_model(facts)
    return (
        "### The LoRA adapter\n\nThe weights above have the LoRA adapters merged in; `adapter/` holds the adapter "
        f"alone, in peft's format, to load onto the base model:\n\n{step}```python\nimport wmtp_cli\n"
        "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base}")  # the base model (see above)\n'
        f'model = PeftModel.from_pretrained(base, "{repo_id}", subfolder="adapter")\n```'
    )


def _adapter_alone(facts: ModelFacts, repo_id: str) -> str:
    step, base = _base_model(facts)
    text = (
        "### With peft\n\nThe repository holds a LoRA adapter in peft's format (`adapter_config.json`, "
        f"`adapter_model.safetensors`); load the base model, then the adapter onto it:\n\n{step}```python\n"
        "import wmtp_cli  # the base model's architecture\nfrom peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base}")  # the base model (see above)\n'
        f'model = PeftModel.from_pretrained(base, "{repo_id}").merge_and_unload()\n```\n\n'
        "With wmtp, a downloaded copy of this folder is a model folder as it is (`wmtp eval --model DIR`): wmtp "
        "loads the base model its `adapter_config.json` names and merges the adapter in."
    )
    return text + ("\n\n" + _critic(repo_id) if facts.value_head else "")


def _critic(repo_id: str) -> str:
    return (
        "### The critic\n\n`value_head.safetensors` and `value_head.json` are the critic V(h_t) trained with the "
        "model (an MLP on the trunk's last hidden state): `wmtp_cli.critic.ValueHead.load(folder)`, on a folder "
        f"downloaded with `hf download {repo_id} --local-dir model`."
    )

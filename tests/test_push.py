"""``wmtp push`` and ``run.push_to_hub`` against the fake hub on localhost (tests/fake_hub.py): the files that
arrive, the model card's metadata and sections, the private flag, and each failure as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_usage_error, run_wmtp_subprocess
from fake_hub import FakeHub
from huggingface_hub import ModelCard

import wmtp_cli
from wmtp_cli.config import load_recipe, save_resolved_recipe

REPO = "me/wmtp-tiny"
CONFIG = {"model_type": "meta_mtp", "n_future_tokens": 4, "hidden_size": 32, "num_hidden_layers": 6,
          "vocab_size": 300, "auto_map": {"AutoModelForCausalLM": "modeling.MTPForCausalLM"}}  # fmt: skip


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """``env(endpoint)`` for the ``wmtp`` fixture: the fake hub, a token (or none), and no token file of this
    machine's user. huggingface_hub reads the endpoint and the token file's path at import: set here as a process
    started with HF_ENDPOINT and HF_HOME would have them."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)

    def env(endpoint: str, token: str | None = "hf_fake") -> dict[str, str]:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        return {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf_home"), **({"HF_TOKEN": token} if token else {})}

    return env


def write_trained_folder(root: Path) -> tuple[Path, Path]:
    """A train-wmtp final/ as the toolkit leaves it (LoRA, both: the adapter beside; the critic), fine-tuned from a
    `wmtp download` conversion of Meta's checkpoint, with an eval of it beside and one of the base model above;
    (final, base). Weights are stand-in bytes: push uploads files, it reads no tensor."""
    base = root / "checkpoints" / "7B_1T_4"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps(CONFIG))
    conversion = {"origin": "hub", "repo_id": "facebook/multi-token-prediction", "variant": "7B_1T_4"}
    (base / "conversion.json").write_text(json.dumps(conversion))
    recipe_file = root / "r.yaml"
    recipe_file.write_text(json.dumps({"model": {"path": str(base)}, "data": {"source": "mbpp"},
                                       "wmtp": {"weighting": "critic", "temperature": 0.5, "lora_r": 4},
                                       "run": {"output_dir": str(root / "runs"), "name": "r"}}))  # fmt: skip
    run = root / "runs" / "r" / "wmtp-critic"
    final = run / "final"
    (final / "adapter").mkdir(parents=True)
    (final / "config.json").write_text(json.dumps(CONFIG))
    for name, size in (("model.safetensors", 3000), ("tokenizer.json", 40), ("value_head.safetensors", 500),
                       ("value_head.json", 30), ("adapter/adapter_model.safetensors", 700),
                       ("adapter/adapter_config.json", 60)):  # fmt: skip
        (final / name).write_bytes(bytes(range(256)) * (size // 256) + name.encode())
    save_resolved_recipe(load_recipe(recipe_file), final)
    (run / "eval").mkdir()
    summary = {"benchmark": "humaneval", "pass_at_k": {"1": 0.25, "10": 0.5}, "n_problems": 164, "n_samples": 1640,
               "settings": {"model": str(final), "temperature": 0.8}}  # fmt: skip
    (run / "eval" / "humaneval.json").write_text(json.dumps(summary))
    (root / "runs" / "r" / "eval").mkdir()
    of_base = {**summary, "benchmark": "mbpp", "settings": {"model": str(base)}, "pass_at_k": {"1": 0.125}}
    (root / "runs" / "r" / "eval" / "mbpp.json").write_text(json.dumps(of_base))  # the base model's: not this one's
    return final, base


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_uploads_the_folder_and_its_model_card_in_one_commit(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    before = snapshot(final)
    hub = FakeHub(REPO)
    with hub as endpoint:
        result = wmtp("push", str(final), REPO, "--private", env=hub_env(endpoint))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert f"{endpoint}/{REPO}" in said and "model card: generated" in said
    assert hub.created == [{"name": "wmtp-tiny", "organization": "me", "visibility": "private", "type": "model"}]
    (commit,) = hub.commits
    assert commit["header"]["summary"] == f"Upload final with wmtp {wmtp_cli.__version__}"
    assert commit["files"].keys() == {*before, "README.md"}
    assert all(commit["files"][name] == data for name, data in before.items())
    assert snapshot(final) == before  # the folder itself is left as it was

    card = ModelCard(commit["files"]["README.md"].decode())
    assert card.data.to_dict() == {
        "base_model": "facebook/multi-token-prediction", "base_model_relation": "finetune", "license": "other",
        "license_name": "multi-token-prediction-research-license",
        "license_link": "https://huggingface.co/facebook/multi-token-prediction", "library_name": "transformers",
        "pipeline_tag": "text-generation", "tags": ["wmtp", "multi-token-prediction", "wmtp-critic", "lora"],
        "datasets": ["google-research-datasets/mbpp"],
    }  # fmt: skip
    sections = {s.split("\n", 1)[0]: s for s in card.text.split("\n## ")[1:]}
    assert list(sections) == ["Base model and licence", "Training data", "Training recipe", "Weighting",
                              "Evaluation", "How to load it", "References"]  # fmt: skip
    assert "Research License" in sections["Base model and licence"] and "7B_1T_4" in sections["Base model and licence"]
    assert "`data.source: mbpp`" in sections["Training data"]
    assert before["recipe.yaml"].decode().strip() in sections["Training recipe"]  # the whole resolved recipe
    assert "| `wmtp.temperature` | `0.5` |" in sections["Training recipe"]
    assert "`wmtp.weighting: critic`" in sections["Weighting"] and "tau = 0.5" in sections["Weighting"]
    assert "| humaneval | 164 | 10 | 0.8 | 0.2500 | 0.5000 |" in sections["Evaluation"]
    assert "mbpp |" not in sections["Evaluation"] and "0.1250" not in sections["Evaluation"]  # the base's eval
    loading = sections["How to load it"]
    for needle in ("import wmtp_cli", f'from_pretrained("{REPO}", trust_remote_code=True)',
                   "wmtp export model --to llama", 'subfolder="adapter"', "ValueHead.load"):  # fmt: skip
        assert needle in loading, needle


def test_public_by_default_and_a_readme_of_its_own_goes_up_as_it_is(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    (final / "README.md").write_text("---\nlicense: mit\n---\n# my own card\n")
    summary = tmp_path / "mbpp-eval.json"
    summary.write_text(json.dumps({"benchmark": "mbpp", "pass_at_k": {"1": 0.3}, "n_problems": 10, "n_samples": 10}))
    hub = FakeHub(REPO)
    with hub as endpoint:
        result = wmtp("push", str(final), REPO, "--commit-message", "first", "--eval", str(summary),
                      env=hub_env(endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert hub.created[0]["visibility"] == "public" and hub.commits[0]["header"]["summary"] == "first"
    assert hub.files["README.md"] == (final / "README.md").read_bytes()
    assert "model card: the folder's own" in " ".join(result.stdout.split())


def test_given_eval_summaries_are_in_the_card(tmp_path):
    from wmtp_cli.hub import build_model_card

    final, _ = write_trained_folder(tmp_path)
    summary = tmp_path / "mbpp-eval.json"
    summary.write_text(json.dumps({"benchmark": "mbpp", "pass_at_k": {"1": 0.3}, "n_problems": 10, "n_samples": 10}))
    card = build_model_card(final, REPO, (summary,))
    assert "| humaneval | 164 | 10 | 0.8 | 0.2500 | 0.5000 |" in card and "| mbpp | 10 | 1 |  | 0.3000 |  |" in card


def test_private_push_to_an_existing_public_repo_is_refused(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    hub = FakeHub(REPO, files={"README.md": b"someone's"})  # exists, public
    with hub as endpoint:
        result = wmtp("push", str(final), REPO, "--private", env=hub_env(endpoint))
    assert_usage_error(result, REPO, "exists and is public", "private push")
    assert hub.commits == []


def test_cards_of_a_pretrained_a_converted_and_an_adapter_folder(tmp_path):
    from wmtp_cli.hub import build_model_card

    pretrained = tmp_path / "tiny"
    pretrained.mkdir()
    (pretrained / "config.json").write_text(json.dumps(CONFIG))
    (pretrained / "pretrain.json").write_text(json.dumps({"key": "k", "steps": 10}))
    card = ModelCard(build_model_card(pretrained, "me/tiny"))
    assert "pretrained from scratch by `wmtp pretrain`" in card.text
    assert "license" not in card.data.to_dict() and "base_model" not in card.data.to_dict()

    final, base = write_trained_folder(tmp_path / "t")
    card = ModelCard(build_model_card(base, "me/meta"))
    assert card.data.license == "other" and card.data.base_model == "facebook/multi-token-prediction"
    assert "converted by `wmtp download`" in card.text

    # wmtp.lora_save=adapter: final/ is the adapter alone, loaded with peft onto the base model it names
    (final / "config.json").unlink()
    (final / "adapter" / "adapter_config.json").rename(final / "adapter_config.json")
    card = ModelCard(build_model_card(final, "me/adapter"))
    assert card.data.library_name == "peft" and card.data.base_model_relation == "adapter"
    # the base is Meta's checkpoint, which loads once converted: the card says how
    assert "wmtp download facebook/multi-token-prediction --variant 7B_1T_4 --out base" in card.text
    assert 'from_pretrained("base")' in card.text and 'PeftModel.from_pretrained(base, "me/adapter")' in card.text
    assert "trust_remote_code" not in card.text


# --- failures: one clear line, exit status 2 ---------------------------------------------------


def test_no_token(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    hub = FakeHub(REPO)
    with hub as endpoint:
        result = wmtp("push", str(final), REPO, env=hub_env(endpoint, token=None))
    assert_usage_error(result, "no Hugging Face token", "HF_TOKEN", "hf auth login")
    assert hub.requests == []


def test_a_repo_the_token_cannot_write(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    hub = FakeHub(REPO, mode="read-only")
    with hub as endpoint:
        result = wmtp("push", str(final), REPO, env=hub_env(endpoint))
    assert_usage_error(result, "cannot write to me/wmtp-tiny", "403", "write access")
    assert hub.commits == []


def test_offline(tmp_path):
    final, _ = write_trained_folder(tmp_path)
    env = {"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_fake", "HF_HOME": str(tmp_path / "h")}
    assert_usage_error(run_wmtp_subprocess("push", str(final), REPO, env=env), "HF_HUB_OFFLINE")


def test_unreachable_hub(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    result = wmtp("push", str(final), REPO, env=hub_env("http://127.0.0.1:9"))
    assert_usage_error(result, "cannot reach the hub at http://127.0.0.1:9")


def test_not_a_model_folder_or_not_a_repo_id(tmp_path, wmtp, hub_env):
    final, _ = write_trained_folder(tmp_path)
    env = hub_env("http://127.0.0.1:9")
    assert_usage_error(wmtp("push", str(tmp_path / "nowhere"), REPO, env=env), "does not exist")
    assert_usage_error(wmtp("push", str(final / "config.json"), REPO, env=env), "is a file")
    assert_usage_error(wmtp("push", str(final.parent), REPO, env=env), "not a model folder", "final")
    assert_usage_error(wmtp("push", str(final), "no-owner", env=env), "not a hub repo id")


# --- run.push_to_hub: train-wmtp pushes final/ when it ends ---------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    from training_fixtures import scored_setup

    return scored_setup(tmp_path_factory.mktemp("push"), with_critic=False)


def train_args(scored: Path, name: str) -> list[str]:
    data = scored.parent / "runs" / "r" / "scored"
    return ["train-wmtp", str(scored), "wmtp.weighting=uniform", "wmtp.max_steps=1", f"run.name={name}",
            f"data.scored={data}", f"run.push_to_hub={REPO}"]  # fmt: skip


def test_train_wmtp_pushes_final(scored, wmtp, hub_env):
    hub = FakeHub(REPO)
    with hub as endpoint:
        result = wmtp(*train_args(scored, "pushed"), "run.push_private=true", env=hub_env(endpoint))
    assert result.returncode == 0, result.stderr
    final = scored.parent / "runs" / "pushed" / "wmtp-uniform" / "final"
    assert f"pushed it to {endpoint}/{REPO}" in " ".join(result.stdout.split())
    assert hub.created[0]["visibility"] == "private"
    assert hub.commits[0]["files"].keys() == {*snapshot(final), "README.md"}
    assert "`wmtp.weighting: uniform`" in hub.files["README.md"].decode()


def test_train_wmtp_push_failures(scored, wmtp, hub_env):
    run = scored.parent / "runs"
    with FakeHub(REPO) as endpoint:
        refused = wmtp(*train_args(scored, "no-token"), env=hub_env(endpoint, token=None))
    assert_usage_error(refused, "no Hugging Face token")
    assert not (run / "no-token").exists()  # refused before any work

    with FakeHub(REPO, mode="read-only") as endpoint:
        failed = wmtp(*train_args(scored, "read-only"), env=hub_env(endpoint))
    final = run / "read-only" / "wmtp-uniform" / "final"
    assert_usage_error(failed, f"the trained model is saved in {final}", "403", f"wmtp push {final} {REPO}")
    assert (final / "model.safetensors").is_file() and (final / "recipe.yaml").is_file()

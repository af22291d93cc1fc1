"""The MTP model's contract: head shapes, KV cache, generate(), padding, checkpointing, dtypes."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close
from transformers import AutoConfig, AutoModelForCausalLM

import wmtp_cli  # noqa: F401  (registers the auto classes)
from wmtp_cli.model import MTPConfig, MTPForCausalLM

V = 97


def tiny_model(n_future: int = 3, n_kv_heads: int = 2, layers: int = 5, seed: int = 0) -> MTPForCausalLM:
    torch.manual_seed(seed)
    config = MTPConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        n_future_tokens=n_future,
        initializer_range=0.2,
    )
    model = MTPForCausalLM(config).eval()
    model.generation_config.eos_token_id = None  # never stop early: compare whole sequences
    model.generation_config.pad_token_id = 0
    return model


@pytest.mark.parametrize("n_future", [1, 2, 4])
def test_all_heads_shape_and_head_one_is_the_default(n_future):
    model = tiny_model(n_future=n_future, layers=n_future + 2)
    x = torch.randint(0, V, (2, 7))
    out = model(x, use_cache=False)
    all_heads = model(x, return_all_heads=True, use_cache=False)
    assert out.logits.shape == (2, 7, V)
    assert all_heads.logits.shape == (2, 7, n_future, V)
    assert_close(all_heads.logits[:, :, 0], out.logits)
    assert out.trunk_hidden_states.shape == (2, 7, 32)


def test_heads_differ_and_all_read_the_trunk_output():
    model = tiny_model(n_future=3)
    x = torch.randint(0, V, (1, 6))
    out = model(x, return_all_heads=True, use_cache=False)
    h = out.trunk_hidden_states
    rotary = model.model.rotary_emb(torch.arange(6)[None])
    for k in range(3):  # each head is its own block applied to the same h_trunk
        assert_close(model.head_logits(k, h, rotary), out.logits[:, :, k])
    assert not torch.allclose(out.logits[:, :, 0], out.logits[:, :, 1])


def test_greedy_generate_equals_manual_argmax_loop():
    model = tiny_model()
    prompt = torch.randint(0, V, (2, 5))
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
    ids = prompt
    for _ in range(8):
        next_id = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    assert torch.equal(generated, ids)


def test_cached_decoding_matches_full_forward_for_all_heads():
    model = tiny_model(n_future=3)
    x = torch.randint(0, V, (2, 9))
    full = model(x, return_all_heads=True, use_cache=False).logits
    out = model(x[:, :5], return_all_heads=True, use_cache=True)
    cache, pieces = out.cache, [out.logits]
    for t in range(5, 9):
        out = model(x[:, t : t + 1], cache=cache, return_all_heads=True, use_cache=True)
        cache = out.cache
        pieces.append(out.logits)
    assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    # A block of several new tokens at once (as a verifier in speculative decoding sends).
    out = model(x[:, :4], return_all_heads=True)
    block = model(x[:, 4:], cache=out.cache, return_all_heads=True).logits
    assert_close(block, full[:, 4:], atol=1e-5, rtol=1e-5)


def test_all_heads_refused_on_a_cache_filled_by_head_one_only():
    model = tiny_model(n_future=3)
    x = torch.randint(0, V, (1, 6))
    cache = model(x[:, :5], use_cache=True).cache
    with pytest.raises(ValueError, match=r"heads 2\.\.n have no cached keys"):
        model(x[:, 5:], cache=cache, return_all_heads=True)


def test_left_padded_batch_generates_like_each_prompt_alone():
    model = tiny_model()
    short, long = torch.randint(1, V, (1, 3)), torch.randint(1, V, (1, 6))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), long])
    mask = torch.cat([torch.cat([torch.zeros(1, 3), torch.ones(1, 3)], 1), torch.ones(1, 6)]).long()
    together = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False)
    alone_short = model.generate(short, max_new_tokens=6, do_sample=False)
    alone_long = model.generate(long, max_new_tokens=6, do_sample=False)
    assert torch.equal(together[0, 3:], alone_short[0])
    assert torch.equal(together[1], alone_long[0])


def test_grouped_query_attention_equals_repeated_key_value_heads():
    gqa = tiny_model(n_kv_heads=2)
    state = gqa.state_dict()
    mha = tiny_model(n_kv_heads=4, seed=1)
    head_dim = 8
    for name, tensor in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            # (2 * hd, d) -> (4 * hd, d): each key/value head serves two query heads
            tensor = tensor.view(2, head_dim, -1).repeat_interleave(2, dim=0).reshape(4 * head_dim, -1)
        state[name] = tensor
    mha.load_state_dict(state)
    x = torch.randint(0, V, (2, 7))
    assert_close(gqa(x, return_all_heads=True).logits, mha(x, return_all_heads=True).logits, atol=1e-5, rtol=1e-5)


def test_labels_give_head_one_causal_lm_loss():
    model = tiny_model()
    x = torch.randint(0, V, (2, 8))
    labels = x.clone()
    labels[:, :3] = -100
    out = model(x, labels=labels, use_cache=False)
    logits = out.logits[:, :-1].reshape(-1, V)
    expected = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    assert_close(out.loss, expected)


def test_gradient_checkpointing_gives_the_same_gradients():
    x = torch.randint(0, V, (2, 8))

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = tiny_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(x, return_all_heads=True, use_cache=False).logits.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert_close(checkpointed[name], plain[name], msg=name)


def test_bf16_forward_is_close_to_fp32():
    model = tiny_model()
    x = torch.randint(0, V, (2, 8))
    fp32 = model(x, return_all_heads=True).logits
    bf16 = model.to(torch.bfloat16)(x, return_all_heads=True).logits
    assert bf16.dtype == torch.bfloat16
    assert_close(bf16.float(), fp32, atol=0.1, rtol=0.05)


def test_save_and_load_through_the_auto_classes(tmp_path):
    model = tiny_model(n_future=2, layers=3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).n_future_tokens == 2
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MTPForCausalLM)
    x = torch.randint(0, V, (1, 6))
    assert_close(loaded(x, return_all_heads=True).logits, model(x, return_all_heads=True).logits)


def test_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="n_future_tokens"):
        MTPConfig(num_hidden_layers=2, n_future_tokens=3)
    with pytest.raises(ValueError, match="multiple of"):
        MTPConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)

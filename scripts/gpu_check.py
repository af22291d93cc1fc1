"""GPU checks of the MTP model: correctness in fp32/bf16 with SDPA kernels, generate(), and 7B-scale figures.

    python scripts/gpu_check.py            # on a CUDA machine
    python scripts/gpu_check.py --small    # the same checks at toy size (runs on CPU too)

Prints one line per check and, at 7B shape (random weights; no download needed), the peak memory and
speed of an all-heads forward, a training step with gradient checkpointing, and cached greedy decoding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from meta_reference import meta_forward, random_meta_state_dict  # noqa: E402

from wmtp_cli.convert.meta_checkpoint import hf_name, read_params, to_hf_layout  # noqa: E402
from wmtp_cli.model import MTPConfig, MTPForCausalLM  # noqa: E402


def converted_model(params: dict, device: str) -> tuple[MTPForCausalLM, dict]:
    """A random Meta state dict and the same weights in our model (converted in memory)."""
    import json
    import tempfile

    state = random_meta_state_dict(params)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.json").write_text(json.dumps(params))
        meta_params = read_params(Path(tmp) / "params.json")
    model = MTPForCausalLM(meta_params.to_config())
    converted = {hf_name(name, meta_params): to_hf_layout(name, t, meta_params) for name, t in state.items()}
    model.load_state_dict(converted)
    return model.to(device).eval(), {k: v.to(device) for k, v in state.items()}


def check_correctness(device: str) -> None:
    params = {
        "dim": 256,
        "n_layers": 6,
        "n_heads": 8,
        "n_kv_heads": 2,
        "vocab_size": 512,
        "multiple_of": 64,
        "ffn_dim_multiplier": 1.3,
        "norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "n_future_tokens": 4,
    }
    model, state = converted_model(params, device)
    tokens = torch.randint(0, 512, (2, 64), device=device)
    with torch.no_grad():
        expected = meta_forward(state, params, tokens)
        fp32 = model(tokens, return_all_heads=True, use_cache=False).logits
        print(f"fp32 all heads vs Meta forward: max |diff| {(fp32 - expected).abs().max().item():.2e}")
        model_bf16 = model.to(torch.bfloat16)
        bf16 = model_bf16(tokens, return_all_heads=True, use_cache=False).logits.float()
        print(
            f"bf16 all heads vs Meta forward (fp32): max |diff| {(bf16 - expected).abs().max().item():.2e}, "
            f"top-1 agreement {(bf16.argmax(-1) == expected.argmax(-1)).float().mean().item():.4f}"
        )
        if device == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if our inputs cannot use flash attention
                flash = model_bf16(tokens, return_all_heads=True, use_cache=False).logits.float()
            print(
                f"bf16 prefill runs on the flash-attention kernel: max |diff| to default "
                f"{(flash - bf16).abs().max().item():.2e}"
            )
        model = model_bf16.float()
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        prompt = tokens[:, :16]
        generated = model.generate(prompt, max_new_tokens=24, do_sample=False)
        ids = prompt
        for _ in range(24):
            ids = torch.cat([ids, model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], 1)
        print(f"greedy generate() == manual argmax loop (fp32, KV cache): {torch.equal(generated, ids)}")


def seven_b_figures(device: str, small: bool) -> None:
    if small:
        config = MTPConfig(
            vocab_size=512,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            n_future_tokens=4,
        )
        seq = 128
    else:  # Meta's 7B n=4 shape: 28 trunk blocks + 4 head blocks
        config = MTPConfig(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            n_future_tokens=4,
        )
        seq = 2048
    dtype = torch.bfloat16
    with torch.device(device):
        model = MTPForCausalLM(config).to(dtype)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e9:.2f}B parameters, {dtype}, seq {seq}")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tokens = torch.randint(0, config.vocab_size, (1, seq), device=device)

    def timed(fn, repeats=3):
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        sync()
        return out, (time.perf_counter() - start) / repeats

    model.eval()
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _, seconds = timed(lambda: model(tokens, return_all_heads=True, use_cache=False).logits)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        print(f"all-heads forward: {seconds * 1e3:.1f} ms ({seq / seconds:,.0f} tokens/s), peak {peak:.1f} GiB")

    model.train()
    model.gradient_checkpointing_enable()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step():
        model.zero_grad(set_to_none=True)
        logits = model(tokens, return_all_heads=True, use_cache=False).logits  # (1, T, n, V)
        loss = sum(
            torch.nn.functional.cross_entropy(logits[0, : seq - k - 1, k].float(), tokens[0, k + 1 :])
            for k in range(config.n_future_tokens)
        )
        loss.backward()
        return loss

    _, seconds = timed(train_step, repeats=2)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    print(f"train step (all heads, gradient checkpointing, no optimizer): {seconds * 1e3:.0f} ms, peak {peak:.1f} GiB")
    model.gradient_checkpointing_disable()
    model.zero_grad(set_to_none=True)

    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    prompt = tokens[:, :128]
    new = 64 if small else 256
    with torch.no_grad():
        _, seconds = timed(lambda: model.generate(prompt, max_new_tokens=new, do_sample=False), repeats=1)
    print(f"greedy decoding with KV cache: {new / seconds:.1f} tokens/s (batch 1, {new} new tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="toy sizes (for a CPU dry run)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    torch.manual_seed(0)
    check_correctness(device)
    seven_b_figures(device, args.small)


if __name__ == "__main__":
    main()

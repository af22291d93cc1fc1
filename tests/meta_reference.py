"""An independent re-implementation of Meta's MTP forward, written from DESIGN.md section 2.

Deliberately plain: Meta's key names, complex-number rotary embedding on interleaved pairs,
explicit softmax attention. Tests compare the converted transformers model against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F


def ffn_hidden(dim: int, multiple_of: int, multiplier: float | None) -> int:
    h = int(2 * 4 * dim / 3)
    if multiplier:
        h = int(multiplier * h)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


def random_meta_state_dict(params: dict, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Random weights in Meta's layout and key names for ``params`` (norm weights random too)."""
    g = torch.Generator().manual_seed(seed)
    d, n_heads = params["dim"], params["n_heads"]
    n_kv = params.get("n_kv_heads") or n_heads
    hd = d // n_heads
    h = ffn_hidden(d, params["multiple_of"], params.get("ffn_dim_multiplier"))
    L, n = params["n_layers"], params["n_future_tokens"]
    V = params["vocab_size"]

    def w(*shape, scale=None):
        scale = scale if scale is not None else 1 / math.sqrt(shape[-1])
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    def block(prefix):
        return {
            f"{prefix}.attention.wq.weight": w(n_heads * hd, d),
            f"{prefix}.attention.wk.weight": w(n_kv * hd, d),
            f"{prefix}.attention.wv.weight": w(n_kv * hd, d),
            f"{prefix}.attention.wo.weight": w(d, n_heads * hd),
            f"{prefix}.feed_forward.w1.weight": w(h, d),
            f"{prefix}.feed_forward.w2.weight": w(d, h),
            f"{prefix}.feed_forward.w3.weight": w(h, d),
            f"{prefix}.attention_norm.weight": (1 + 0.1 * torch.randn(d, generator=g)).to(dtype),
            f"{prefix}.ffn_norm.weight": (1 + 0.1 * torch.randn(d, generator=g)).to(dtype),
        }

    sd = {"tok_embeddings.weight": w(V, d, scale=1.0)}
    for i in range(L - n + 1):
        sd.update(block(f"layers.{i}"))
    for j in range(n - 1):
        sd.update(block(f"extra_heads.{j}"))
    sd["norm.weight"] = (1 + 0.1 * torch.randn(d, generator=g)).to(dtype)
    sd["output.weight"] = w(V, d)
    return sd


def write_meta_checkpoint(
    root: Path, variant: str, params: dict, tokenizer_model: Path, seed: int = 0, model_parallel: int = 1
) -> dict[str, torch.Tensor]:
    """Write ``root/variant/{params.json, consolidated*.pth}`` and ``root/tokenizer.model``."""
    sd = random_meta_state_dict(params, seed)
    vdir = root / variant
    vdir.mkdir(parents=True, exist_ok=True)
    (vdir / "params.json").write_text(json.dumps(params))
    if model_parallel == 1:
        torch.save(sd, vdir / "consolidated.pth")
    else:  # fairscale's split: column-parallel by rows, row-parallel by columns, embedding by width
        dims = {"tok_embeddings": 1, "output": 0, "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}
        for r in range(model_parallel):
            part = {}
            for name, t in sd.items():
                dim = next((dims[p] for p in name.split(".") if p in dims), None)
                part[name] = t.clone() if dim is None else t.chunk(model_parallel, dim=dim)[r].clone()
            torch.save(part, vdir / f"consolidated.{r:02d}.pth")
    (root / "tokenizer.model").write_bytes(Path(tokenizer_model).read_bytes())
    return sd


def rms_norm(x, weight, eps):
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def meta_forward(sd: dict[str, torch.Tensor], params: dict, tokens: torch.Tensor) -> torch.Tensor:
    """Meta's forward: all heads' logits, (B, T, n, V), from the trunk output shared by every head."""
    d, n_heads = params["dim"], params["n_heads"]
    n_kv = params.get("n_kv_heads") or n_heads
    hd, eps = d // n_heads, params["norm_eps"]
    L, n = params["n_layers"], params["n_future_tokens"]
    B, T = tokens.shape

    dev = tokens.device
    freqs = 1.0 / (params["rope_theta"] ** (torch.arange(0, hd, 2, device=dev)[: hd // 2].float() / hd))
    freqs_cis = torch.polar(
        torch.ones(T, hd // 2, device=dev), torch.outer(torch.arange(T, device=dev).float(), freqs)
    )  # (T, hd/2)

    def rotary(x):  # x: (B, T, H, hd); Meta pairs adjacent dims as one complex number
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3).type_as(x)

    def block(prefix, x):
        p = lambda k: sd[f"{prefix}.{k}"]  # noqa: E731
        hx = rms_norm(x, p("attention_norm.weight"), eps)
        q = (hx @ p("attention.wq.weight").T).view(B, T, n_heads, hd)
        k = (hx @ p("attention.wk.weight").T).view(B, T, n_kv, hd)
        v = (hx @ p("attention.wv.weight").T).view(B, T, n_kv, hd)
        q, k = rotary(q), rotary(k)
        k = k.repeat_interleave(n_heads // n_kv, dim=2)
        v = v.repeat_interleave(n_heads // n_kv, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        scores = q @ k.transpose(2, 3) / math.sqrt(hd)
        scores = scores + torch.full((T, T), float("-inf"), device=dev).triu(1)
        att = F.softmax(scores.float(), dim=-1).type_as(q) @ v
        h = x + att.transpose(1, 2).reshape(B, T, -1) @ p("attention.wo.weight").T
        hf = rms_norm(h, p("ffn_norm.weight"), eps)
        ff = F.silu(hf @ p("feed_forward.w1.weight").T) * (hf @ p("feed_forward.w3.weight").T)
        return h + ff @ p("feed_forward.w2.weight").T

    h = sd["tok_embeddings.weight"][tokens]
    for i in range(L - n):
        h = block(f"layers.{i}", h)
    head_blocks = [f"layers.{L - n}"] + [f"extra_heads.{j}" for j in range(n - 1)]
    outs = []
    for prefix in head_blocks:
        hk = block(prefix, h)
        outs.append(rms_norm(hk, sd["norm.weight"], eps) @ sd["output.weight"].T)
    return torch.stack(outs, dim=2)  # (B, T, n, V)

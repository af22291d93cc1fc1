"""Peak memory of converting a Meta checkpoint, as a multiple of the checkpoint's size.

Builds a synthetic fp32 checkpoint in Meta's layout (about 1 GiB by default), converts it with
``wmtp download`` in a fresh process, and prints that process's peak resident set size (RSS)
over the checkpoint's size, next to the peak of a process that only imports the converter.

    python scripts/bench_convert_memory.py [--gib 1.0] [--dtype bf16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from meta_reference import random_meta_state_dict  # noqa: E402
from sp_fixtures import train_tiny_sentencepiece  # noqa: E402


def params_for_size(gib: float) -> dict:
    """A Llama-shaped n=4 model whose fp32 weights take about ``gib`` GiB."""
    dim, vocab = 1024, 32000
    per_block = (4 * dim * dim + 3 * dim * 2816 + 2 * dim) * 4
    fixed = 2 * vocab * dim * 4
    blocks = max(4, round((gib * 2**30 - fixed) / per_block))
    return {
        "dim": dim,
        "n_layers": blocks,
        "n_heads": 8,
        "n_kv_heads": 8,
        "vocab_size": vocab,
        "multiple_of": 256,
        "ffn_dim_multiplier": None,
        "norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "n_future_tokens": 4,
    }


def peak_rss_of(command: list[str]) -> tuple[int, float]:
    """Run ``command`` in a child and return (its peak RSS in bytes, seconds)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    pid = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    return usage.ru_maxrss * 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="checkpoint size to build")
    parser.add_argument("--dtype", default=None, help="convert to fp32/bf16/fp16 (default: keep fp32)")
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="wmtp-bench-"))
    params = params_for_size(args.gib)
    variant = work / "meta" / "bench"
    variant.mkdir(parents=True, exist_ok=True)
    train_tiny_sentencepiece(work / "meta" / "tokenizer.model")
    (variant / "params.json").write_text(json.dumps(params))
    torch.save(random_meta_state_dict(params), variant / "consolidated.pth")
    size = (variant / "consolidated.pth").stat().st_size

    import_only, _ = peak_rss_of([sys.executable, "-c", "import wmtp_cli.convert, wmtp_cli.convert.tokenizer"])
    command = [sys.executable, "-m", "wmtp_cli", "download", str(work / "meta"), "--out", str(work / "out"), "--force"]
    if args.dtype:
        command += ["--dtype", args.dtype]
    peak, seconds = peak_rss_of(command)

    print(f"checkpoint            {size / 2**30:.3f} GiB ({params['n_layers']} blocks, dim {params['dim']}, fp32)")
    print(f"peak RSS, import only {import_only / 2**30:.3f} GiB")
    print(f"peak RSS, conversion  {peak / 2**30:.3f} GiB in {seconds:.1f} s")
    print(f"peak RSS / checkpoint {peak / size:.2f}x   (goal <= 1.5x)")
    print(f"above import baseline {(peak - import_only) / size:.2f}x")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"(this driver process, which built the checkpoint, peaked at {own / 2**30:.2f} GiB; not counted)")


if __name__ == "__main__":
    main()

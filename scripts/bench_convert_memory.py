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


# The child reads its own high-water mark (VmHWM) as it exits: unlike getrusage's ru_maxrss, it
# belongs to the child's own address space and does not inherit the (large) parent's peak.
_REPORT_PEAK = """
import atexit, sys
def _report():
    status = open("/proc/self/status").read()
    peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    sys.stderr.write(f"VMHWM_KIB={peak}\\n")
atexit.register(_report)
"""


def peak_rss_of(code: str) -> tuple[int, float]:
    """Run ``code`` in a fresh interpreter; return (its peak RSS in bytes, seconds)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", _REPORT_PEAK + code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{result.stderr}")
    peak_kib = int(result.stderr.rsplit("VMHWM_KIB=", 1)[1].split()[0])
    return peak_kib * 1024, seconds


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

    import_only, _ = peak_rss_of("import wmtp_cli.cli.app, wmtp_cli.convert.tokenizer")
    argv = ["download", str(work / "meta"), "--out", str(work / "out"), "--force"]
    if args.dtype:
        argv += ["--dtype", args.dtype]
    peak, seconds = peak_rss_of(f"from wmtp_cli.cli.app import main; main({argv!r})")

    print(f"checkpoint            {size / 2**30:.3f} GiB ({params['n_layers']} blocks, dim {params['dim']}, fp32)")
    print(f"peak RSS, import only {import_only / 2**30:.3f} GiB")
    print(f"peak RSS, conversion  {peak / 2**30:.3f} GiB in {seconds:.1f} s")
    print(f"peak RSS / checkpoint {peak / size:.2f}x   (goal <= 1.5x)")
    print(f"above import baseline {(peak - import_only) / size:.2f}x")


if __name__ == "__main__":
    main()

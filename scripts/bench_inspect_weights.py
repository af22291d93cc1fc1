"""Time ``wmtp inspect-weights`` on the CPU: 2,000 tokens in-process, and a 200 kB text as a whole command.

    python scripts/bench_inspect_weights.py [--tokens 2000] [--long-kb 200] [--repeats 3] [--threads N]

Builds the tiny random MTP model of the tests (``tests/tiny_models.make_tiny_mtp_model``: 4 heads, hidden
size 32, context 4,096 tokens, the tiny SentencePiece tokenizer) and a value head with random output
weights, and writes two texts of Python code with a few non-ASCII characters (so byte-fallback tokens
occur): one of exactly ``--tokens`` tokens (BOS included) and one of ``--long-kb`` kB. Then times

- the inspection in-process on the short text (:func:`inspect_weights`: tokenising, the trunk and value
  head, the weights, the per-token texts; model already loaded), the median of ``--repeats``, and each
  format's rendering of it;
- the whole command on the long text in a fresh interpreter (``python -m wmtp_cli inspect-weights LONG
  --format json --out FILE``: import, load, windows, JSON), once, with the windows' progress shown on the
  terminal as a user sees it.

Prints a Markdown table. Goals (issue #12): 2,000 tokens under 1 s in-process; 200 kB under 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the goals are for the CPU

SNIPPET = "def f{i}(a, b):\n    # add é and 中 ✓\n    return a * {i} + b\n\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of the short text, BOS included")
    parser.add_argument("--long-kb", type=int, default=200, help="size of the long text in kB (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs; the median counts")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    return parser.parse_args(argv)


def make_inputs(folder: Path, n_tokens: int, long_bytes: int) -> tuple[Path, Path, Path, Path]:
    """(model folder, critic folder, text of exactly n_tokens tokens, text of long_bytes bytes)."""
    import torch
    from tiny_models import make_tiny_mtp_model

    from wmtp_cli.critic import ValueHead, ValueHeadConfig
    from wmtp_cli.model.loading import load_tokenizer

    model = make_tiny_mtp_model(folder / "model")
    torch.manual_seed(0)
    head = ValueHead(ValueHeadConfig(input_size=32, hidden_size=16))
    torch.nn.init.normal_(head.out.weight, std=0.5)  # a fresh head is constant; give it something to say
    critic = head.save(folder / "critic")
    tokenizer = load_tokenizer(str(model))
    text, i = "", 0
    while len(tokenizer(text)["input_ids"]) <= n_tokens:
        text += SNIPPET.format(i=i)
        i += 1
    encoded = tokenizer(text, return_offsets_mapping=True)
    text = text[: encoded["offset_mapping"][n_tokens - 1][1]]
    while len(tokenizer(text)["input_ids"]) > n_tokens:  # a cut inside a character's byte tokens
        text = text[:-1]
    short = folder / "short.txt"
    short.write_text(text, encoding="utf-8")
    long_text, i = "", 0
    while len(long_text.encode()) < long_bytes:
        long_text += SNIPPET.format(i=i)
        i += 1
    long = folder / "long.txt"
    long.write_text(long_text.encode()[:long_bytes].decode("utf-8", errors="ignore"), encoding="utf-8")
    return model, critic, short, long


def in_process(model: Path, critic: Path, text: Path, repeats: int) -> dict[str, float]:
    """Median seconds of the inspection and of each format's rendering, model loaded once."""
    from rich.console import Console

    from wmtp_cli.cli.inspect_weights import inspection_table
    from wmtp_cli.inspection import find_sources, inspect_weights, render_html
    from wmtp_cli.inspection.locate import load_sources

    def median(fn):
        fn()  # warm-up: lazy imports, first-call kernels
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    content = text.read_text(encoding="utf-8")
    with contextlib.redirect_stderr(io.StringIO()):
        lm, tokenizer, head, _ = load_sources(find_sources(str(model), critic))
    result = inspect_weights(lm, tokenizer, head, content)
    header = {"model": str(model), "critic": str(critic), "temperature": "1"}

    def table(limit: int) -> str:
        console = Console(file=io.StringIO(), width=200, no_color=True)
        console.print(inspection_table(result, header, limit))
        return console.file.getvalue()

    return {
        "inspection (inspect_weights)": median(lambda: inspect_weights(lm, tokenizer, head, content)),
        "render json": median(lambda: ",\n".join(json.dumps(r, ensure_ascii=False) for r in result.to_json())),
        "render html": median(lambda: render_html(result, header)),
        "render table, first 200 rows": median(lambda: table(200)),
        "render table, all rows": median(lambda: table(0)),
    }


def whole_command(model: Path, critic: Path, text: Path, out: Path) -> tuple[float, int]:
    """Seconds of ``wmtp inspect-weights TEXT --format json --out OUT`` in a fresh interpreter, and its rows."""
    cmd = [sys.executable, "-m", "wmtp_cli", "inspect-weights", str(text), "--model", str(model), "--critic",
           str(critic), "--format", "json", "--out", str(out)]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})  # progress on the terminal
    return time.perf_counter() - began, len(json.loads(out.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, critic, short, long = make_inputs(folder, args.tokens, args.long_kb * 1000)
        parts = in_process(model, critic, short, args.repeats)
        seconds, rows = whole_command(model, critic, long, folder / "long.json")
        json_mb = (folder / "long.json").stat().st_size / 1e6

    print(f"\nCPU, torch {torch.__version__}, {torch.get_num_threads()} threads; tiny MTP model (hidden 32, 4 heads, "
          "context 4,096)\n")  # fmt: skip
    print("| measurement | seconds |")
    print("|---|---:|")
    for name, value in parts.items():
        print(f"| {args.tokens:,} tokens in-process: {name} (median of {args.repeats}) | {value:.3f} |")
    print(f"| {args.long_kb} kB ({rows:,} tokens), whole command in a fresh process, json to a file "
          f"({json_mb:.0f} MB) | {seconds:.1f} |")  # fmt: skip
    short_ok = parts["inspection (inspect_weights)"] < 1
    print(
        f"\n{args.tokens:,} tokens in-process: {'under' if short_ok else 'OVER'} the 1 s goal; "
        f"{args.long_kb} kB: {'under' if seconds < 60 else 'OVER'} the 60 s goal"
    )


if __name__ == "__main__":
    main()

"""Time ``wmtp inspect-weights`` on 2,000 tokens with the tiny test model, on the CPU, in all three formats.

    python scripts/bench_inspect_weights.py [--tokens 2000] [--repeats 3] [--threads N]

Builds the tiny random MTP model of the tests (``tests/tiny_models.make_tiny_mtp_model``: 4 heads, hidden
size 32, the tiny SentencePiece tokenizer) and a random value head, writes a text of exactly ``--tokens``
tokens (BOS included; Python code with a few non-ASCII characters, so byte-fallback tokens occur), and times:

- the whole command in a fresh interpreter (``python -m wmtp_cli inspect-weights ... --out FILE``), which
  includes importing wmtp_cli (torch, transformers) and loading the model, once per format;
- the command in-process (``wmtp_cli.cli.app.main``, modules already imported), best of ``--repeats``;
- its parts in-process: loading model, tokenizer and critic; :func:`inspect_weights` (tokenising, the
  trunk and value head forward, the weights, the per-token texts); rendering each format.

Prints a Markdown table. The acceptance bound of issue #6 is 10 s for 2,000 tokens on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the bound is for the CPU

SNIPPET = "def f{i}(a, b):\n    # add é and 中 ✓\n    return a * {i} + b\n\n"
FORMATS = {"json": [], "html": [], "table (first 200 rows)": [], "table (all rows, --rows 0)": ["--rows", "0"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of the text, BOS included (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs per format; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    return parser.parse_args(argv)


def make_inputs(folder: Path, n_tokens: int) -> tuple[Path, Path, Path]:
    """(model folder, critic folder, text file of exactly n_tokens tokens)."""
    import torch
    from tiny_models import make_tiny_mtp_model

    from wmtp_cli.critic import ValueHead, ValueHeadConfig
    from wmtp_cli.training.runtime import load_tokenizer

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
    end = encoded["offset_mapping"][n_tokens - 1][1]
    text = text[:end]
    while len(tokenizer(text)["input_ids"]) > n_tokens:  # a cut inside a character's byte tokens
        text = text[:-1]
    path = folder / "text.txt"
    path.write_text(text, encoding="utf-8")
    return model, critic, path


def command(model: Path, critic: Path, text: Path, fmt: str, extra: list[str], out: Path) -> list[str]:
    kind = fmt.split()[0]
    return ["inspect-weights", str(text), "--model", str(model), "--critic", str(critic), "--format", kind,
            "--out", str(out), *extra]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, critic, text = make_inputs(folder, args.tokens)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import wmtp_cli.cli.app"], check=True, env=env)
        import_s = time.perf_counter() - began

        fresh = {}
        for fmt, extra in FORMATS.items():
            cmd = [sys.executable, "-m", "wmtp_cli", *command(model, critic, text, fmt, extra, folder / "out")]
            began = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            fresh[fmt] = time.perf_counter() - began

        from wmtp_cli.cli.app import main as wmtp

        in_process = {}
        for fmt, extra in FORMATS.items():
            times = []
            for _ in range(args.repeats + 1):  # the first run warms up (lazy imports)
                began = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    try:
                        wmtp(command(model, critic, text, fmt, extra, folder / "out"))
                    except SystemExit as exc:  # click ends every command with one
                        if exc.code:
                            raise
                times.append(time.perf_counter() - began)
            in_process[fmt] = min(times[1:])

        parts = time_parts(model, critic, text, args.repeats)

    print(f"{args.tokens} tokens, tiny MTP model (hidden 32, 4 heads), CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| format | fresh process (import + load + run) | in-process command |")
    print("|---|---|---|")
    for fmt in FORMATS:
        print(f"| {fmt} | {fresh[fmt]:.2f} s | {in_process[fmt]:.2f} s |")
    print(f"\nimport wmtp_cli.cli.app alone, fresh process: {import_s:.2f} s")
    print("in-process parts: " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in parts.items()))
    worst = max(fresh.values())
    print(f"\nslowest whole command: {worst:.2f} s ({'under' if worst < 10 else 'OVER'} the 10 s bound)")


def time_parts(model: Path, critic: Path, text: Path, repeats: int) -> dict[str, float]:
    from rich.console import Console

    from wmtp_cli.cli.inspect_weights import _table
    from wmtp_cli.inspection import find_sources, inspect_weights, render_html
    from wmtp_cli.inspection.locate import load_sources

    def best(fn):
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - began)
        return min(times), value

    content = text.read_text(encoding="utf-8")
    with contextlib.redirect_stderr(io.StringIO()):
        load_s, (lm, tokenizer, head, _) = best(lambda: load_sources(find_sources(str(model), critic)))
    compute_s, result = best(lambda: inspect_weights(lm, tokenizer, head, content))
    header = {"model": str(model), "critic": str(critic), "temperature": "1"}

    def table(limit: int) -> str:
        console = Console(file=io.StringIO(), width=200, no_color=True)
        console.print(_table(result, header, limit))
        return console.file.getvalue()

    return {
        "load model + critic": load_s,
        "inspect_weights": compute_s,
        "json": best(lambda: ",\n".join(json.dumps(row, ensure_ascii=False) for row in result.to_json()))[0],
        "html": best(lambda: render_html(result, header))[0],
        "table 200 rows": best(lambda: table(200))[0],
        "table all rows": best(lambda: table(0))[0],
    }


if __name__ == "__main__":
    main()

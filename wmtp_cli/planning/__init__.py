"""Planning a run before it starts: memory per GPU, tokens and time (``wmtp plan``)."""

from wmtp_cli.planning.memory import Memory, Setup, Shape, activations, memory, token_flops
from wmtp_cli.planning.plan import H100_BF16_TFLOPS, Plan, build_plan

__all__ = [
    "H100_BF16_TFLOPS",
    "Memory",
    "Plan",
    "Setup",
    "Shape",
    "activations",
    "build_plan",
    "memory",
    "token_flops",
]

"""What a ``train-wmtp`` run needs per process, from the model's shape and the recipe, before any work.

Every figure is bytes per process (per GPU). The model is counted exactly (built on the meta device: no
memory, no weights read); the rest are formulas:

- **weights, gradients, AdamW state**: parameters x bytes of their dtype; gradients and the two AdamW
  moments only for trainable parameters (LoRA adapters, or everything but frozen heads). DDP adds its
  gradient buckets (a second copy of the gradients). FSDP2 divides all three by the number of processes
  and adds what is unsharded at a time: two blocks' parameters (the one computing and the one prefetched)
  in the compute dtype with their full gradients for the reduce-scatter, and the root unit (embeddings,
  the shared norm and unembedding, the critic), which stays gathered through the step.
- **activations** of one micro-batch (``wmtp.batch_size`` x ``data.max_length`` tokens: the padded
  worst case), in the compute dtype: per token and block, the tensors autograd keeps, 11 d + 4 f
  elements for a Llama block (two RMSNorms 3 d each, q, k, v, the attention output and its projection
  input 5 d, the SwiGLU's gate, up, activation and product 4 f), with fused attention (flash or memory-
  efficient kernels: no T x T scores; torch's CPU kernel is fused too). Activation checkpointing keeps
  only each block's input (d) plus one block being recomputed. The heads: the memory-efficient loop
  keeps one head's block and (B, T, V) logits at a time, with the cross-entropy's fp32 log-probabilities
  and their gradient (2 V per token in fp32 beside the logits); the plain path keeps all n at once.

tests/test_plan.py checks the total against the measured peak memory of small CPU runs (within 25%).
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAM_MOMENTS = 2


@dataclass(frozen=True)
class Shape:
    """The numbers of a model and its critic that memory and time depend on."""

    hidden: int
    ffn: int
    vocab: int
    trunk_layers: int
    heads: int
    parameters: int  # the model's, all of them
    block_parameters: int  # one block (trunk layers and heads are the same block)
    root_parameters: int  # what is in no block: embeddings, the shared norm and unembedding (FSDP2's root unit)
    critic_parameters: int


@dataclass(frozen=True)
class Setup:
    """How the run trains: what the recipe and the launch decide."""

    strategy: str  # single | ddp | fsdp2
    processes: int
    param_dtype: str  # model.dtype
    compute_dtype: str  # bf16 under mixed precision on a GPU, else the parameters' dtype
    trainable: int  # parameters the optimizer updates, critic included
    active_heads: int  # heads that get a loss (1 for ntp)
    micro_batch_tokens: int
    checkpointing: bool
    head_loop: bool
    lora: bool


@dataclass(frozen=True)
class Memory:
    weights: int
    gradients: int
    optimizer: int
    unsharded: int  # FSDP2's gathered blocks and root unit; DDP's gradient buckets
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.unsharded + self.activations


def memory(shape: Shape, setup: Setup) -> Memory:
    """Bytes per process of a training step (see the module docstring)."""
    p_bytes, c_bytes = BYTES[setup.param_dtype], BYTES[setup.compute_dtype]
    # Trained adapters and critic keep fp32 whatever the model's dtype (peft and the value head do).
    t_bytes = 4 if setup.lora else p_bytes
    everything = shape.parameters + shape.critic_parameters
    frozen = everything - setup.trainable
    weights = frozen * p_bytes + setup.trainable * t_bytes
    gradients = setup.trainable * t_bytes
    optimizer = setup.trainable * t_bytes * ADAM_MOMENTS
    unsharded = 0
    if setup.strategy == "fsdp2":
        weights, gradients, optimizer = (-(-x // setup.processes) for x in (weights, gradients, optimizer))
        block = shape.block_parameters
        gathered_root = shape.root_parameters + shape.critic_parameters
        unsharded = 2 * block * c_bytes + block * 4 + gathered_root * (c_bytes + 4)
        if setup.processes == 1 and c_bytes == p_bytes:
            unsharded = 0  # a world of one gathers nothing: the shard is the whole tensor
    elif setup.strategy == "ddp" and setup.processes > 1:
        unsharded = gradients  # the buckets DDP all-reduces from
    return Memory(weights, gradients, optimizer, unsharded, activations(shape, setup))


def activations(shape: Shape, setup: Setup) -> int:
    """Bytes of the activations one micro-batch keeps at the peak of its backward pass."""
    m, d, e = setup.micro_batch_tokens, shape.hidden, BYTES[setup.compute_dtype]
    block = m * (11 * d + 4 * shape.ffn) * e
    logits = m * shape.vocab * (e + 2 * 4)  # the logits, the cross-entropy's fp32 log-probabilities and their gradient
    trunk = shape.trunk_layers * (m * d * e if setup.checkpointing else block) + (block if setup.checkpointing else 0)
    if setup.head_loop:
        heads = block + logits  # one head at a time; each keeps only its input, h_trunk, shared
    else:
        per_head = (m * d * e + block) if setup.checkpointing else block
        heads = setup.active_heads * (per_head + logits)
    embeddings = 2 * m * d * e  # the embedding output and h_trunk
    return trunk + heads + embeddings


def token_flops(shape: Shape, setup: Setup, sequence: int) -> float:
    """FLOPs of one token's forward and backward pass: 2 per weight forward, 2 for the activation gradients,
    2 for the weight gradients of trained weights; the checkpointed trunk's second forward; the head loop's
    second forward of each head; and causal attention (6 L T d in all)."""
    head = shape.block_parameters + shape.hidden * shape.vocab  # a head block and the unembedding it shares
    trunk = shape.trunk_layers * shape.block_parameters
    used = trunk + setup.active_heads * head
    flops = 4.0 * used + 2.0 * min(setup.trainable, used)
    if setup.checkpointing:
        flops += 2.0 * trunk
    if setup.head_loop:
        flops += 2.0 * setup.active_heads * head
    flops += 6.0 * (shape.trunk_layers + setup.active_heads) * sequence * shape.hidden
    return flops

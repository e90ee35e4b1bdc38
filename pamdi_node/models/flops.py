"""FLOP and byte accounting of blocks, COUNTED by running them under ``FlopCounterMode``.

Convention (the one of ``torch.utils.flop_counter``): only matrix products and convolutions count,
a multiply-accumulate = 2 FLOPs (so a conv is ``2 * Cin/groups * Cout * kh * kw * Hout * Wout`` per
image and an ``(m x k) @ (k x n)`` product is ``2 * m * k * n``). Bias additions, normalisation
(BatchNorm, LayerNorm), activations (ReLU, GELU), residual additions, pooling, softmax and embedding
look-ups are NOT counted; they are a few percent of the total for these models. Attention counts its
two products (``Q K^T`` and ``A V``: ``2 * T * T * d`` each) in full, although the causal mask makes
half of the scores unused.

Blocks are run on the ``meta`` device (shapes only, no weights, no arithmetic): counting is instant
for every model and batch size, and scaled-dot-product attention decomposes into counted ``bmm``s there
(the fused CPU kernel would be invisible to the counter).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

Output = torch.Tensor | tuple[torch.Tensor, ...]


def output_tensors(out: Output) -> tuple[torch.Tensor, ...]:
    """The tensors of a block output (one tensor, or a tuple such as GPT-2's top-k)."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def output_nbytes(out: Output) -> int:
    return sum(t.numel() * t.element_size() for t in output_tensors(out))


def count_flops(block: nn.Module, x: Output) -> tuple[int, Output]:
    """FLOPs of ``block(x)`` and its output (run wherever ``block`` and ``x`` live, ideally ``meta``)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        out = block(x)
    return int(counter.get_total_flops()), out

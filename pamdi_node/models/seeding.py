"""Deterministic, order-independent random weights.

Every tensor of a model (parameter or buffer) is filled from its own ``torch.Generator`` whose seed
is derived from ``(seed, architecture, full state_dict key)``. Consequently a node that builds only
blocks ``i..j`` gets bit-for-bit the same weights as the monolithic model built elsewhere, in any
construction order, without shipping a file. The distributions follow the usual initialisations
(He-normal convolutions, N(0, 0.02) transformer weights) with non-trivial normalisation statistics, so
that a weight-mapping mistake changes the outputs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InitRule:
    """How to draw one tensor: ``normal(a, b)`` = mean/std, ``uniform(a, b)`` = bounds, ``const(a)``."""

    kind: str
    a: float = 0.0
    b: float = 0.0

    @staticmethod
    def normal(mean: float, std: float) -> InitRule:
        return InitRule("normal", mean, std)

    @staticmethod
    def uniform(low: float, high: float) -> InitRule:
        return InitRule("uniform", low, high)

    @staticmethod
    def const(value: float) -> InitRule:
        return InitRule("const", value)


def tensor_seed(seed: int, arch: str, key: str) -> int:
    """A 63-bit generator seed for one tensor, stable across processes, machines and Python versions."""
    digest = hashlib.sha256(f"pamdi|{arch}|{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def draw(shape: torch.Size | tuple[int, ...], rule: InitRule, seed: int, arch: str, key: str) -> torch.Tensor:
    """Draw a float32 CPU tensor for ``key`` (always on CPU so every device gets the same numbers)."""
    if rule.kind == "const":
        return torch.full(tuple(shape), rule.a, dtype=torch.float32)
    gen = torch.Generator(device="cpu").manual_seed(tensor_seed(seed, arch, key))
    out = torch.empty(tuple(shape), dtype=torch.float32)
    if rule.kind == "normal":
        out.normal_(rule.a, rule.b, generator=gen)
    elif rule.kind == "uniform":
        out.uniform_(rule.a, rule.b, generator=gen)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown init rule {rule.kind!r}")
    return out


def default_rule(module: nn.Module, name: str, tensor: torch.Tensor) -> InitRule:
    """Initialisation of the standard torch layers; modules may override with ``pamdi_init_rule``."""
    custom = getattr(module, "pamdi_init_rule", None)
    if custom is not None:
        rule = custom(name, tensor)
        if rule is not None:
            return rule
    if isinstance(module, nn.Conv2d):
        if name == "weight":
            # He-normal, fan-out mode (what torchvision uses for ResNets).
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
            return InitRule.normal(0.0, math.sqrt(2.0 / fan_out))
        fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        bound = 1.0 / math.sqrt(fan_in)
        return InitRule.uniform(-bound, bound)
    if isinstance(module, nn.BatchNorm2d):
        # Non-trivial statistics so that a BN loaded into the wrong place changes the result.
        return {
            "weight": InitRule.uniform(0.8, 1.2),
            "bias": InitRule.normal(0.0, 0.05),
            "running_mean": InitRule.normal(0.0, 0.05),
            "running_var": InitRule.uniform(0.8, 1.2),
            "num_batches_tracked": InitRule.const(0.0),
        }[name]
    if isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.in_features)
        return InitRule.uniform(-bound, bound)
    if isinstance(module, nn.LayerNorm):
        return InitRule.normal(1.0, 0.02) if name == "weight" else InitRule.normal(0.0, 0.02)
    if isinstance(module, nn.Embedding):
        return InitRule.normal(0.0, 0.02)
    raise TypeError(f"no initialisation rule for {type(module).__name__}.{name}")


def init_seeded(
    module: nn.Module,
    *,
    seed: int,
    arch: str,
    full_key: Callable[[str], str],
) -> None:
    """Fill every parameter and buffer of ``module`` from its per-key generator.

    ``full_key`` maps a key local to ``module`` to the key it has in the monolithic model's state_dict
    (tied weights map to the key of the tensor they are tied to, so they get the same numbers).
    """
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            tensors = list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False))
            for name, tensor in tensors:
                if tensor is None:
                    continue
                local = f"{mod_name}.{name}" if mod_name else name
                key = full_key(local)
                values = draw(tensor.shape, default_rule(mod, name, tensor), seed, arch, key)
                tensor.copy_(values.to(dtype=tensor.dtype))

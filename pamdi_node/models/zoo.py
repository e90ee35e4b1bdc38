"""The model zoo: every model is an ordered list of blocks; a partition is a contiguous block range.

``build_blocks(name, start, end)`` constructs ONLY blocks ``[start, end)`` (on the ``meta`` device
first, then materialised), so a node's memory is proportional to its share. Weights are random by
default, drawn per tensor from ``(seed, architecture, state_dict key)`` (see :mod:`.seeding`): any node
building any range gets exactly the numbers the monolithic model has. ``weights=FILE`` loads a real
torchvision / Hugging Face state_dict instead, keeping only the built blocks' tensors.

Every block takes and returns one tensor, except the GPT-2 head, whose default output is a
``(values, indices)`` top-k tuple (see :mod:`.gpt2`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pamdi_node.models import gpt2, resnet, tiny
from pamdi_node.models.device import check_device
from pamdi_node.models.flops import count_flops, output_nbytes, output_tensors
from pamdi_node.models.profile import BlockProfile, ModelProfile
from pamdi_node.models.seeding import init_seeded
from pamdi_node.models.weights import WeightsError, read_state_dict, select

BlockOutput = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo needs to know about one model."""

    name: str
    arch: str  # seeding namespace: models sharing it share their random weights
    description: str
    block_names: tuple[str, ...]
    make_block: Callable[..., nn.Module]  # (index, **head_options) -> block module
    key_map: Callable[[int], dict[str, str]]  # block index -> {local key prefix: full key prefix}
    make_monolithic: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # without the batch dimension
    input_dtype: torch.dtype
    example: Callable[[int, int], torch.Tensor]  # (batch, seed) -> input
    tied: dict[str, str] = field(default_factory=dict)  # full key -> key of the tensor it is tied to
    alternatives: Callable[[str], list[str]] = lambda key: []
    head_options: tuple[str, ...] = ()

    @property
    def num_blocks(self) -> int:
        return len(self.block_names)


def _image(batch: int, seed: int, size: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=gen)


def _upsampled_cifar(batch: int, seed: int) -> torch.Tensor:
    # The paper ran ResNet-56 on 224x224 inputs: CIFAR-sized images upsampled (bilinear) to 224.
    return F.interpolate(_image(batch, seed, 32), size=(224, 224), mode="bilinear", align_corners=False)


def _prefix_map(names: tuple[str, ...]) -> Callable[[int], dict[str, str]]:
    return lambda i: {"": f"{names[i]}."}


def _resnet_map(imagenet: bool) -> Callable[[int], dict[str, str]]:
    return lambda i: {"": resnet.resnet_block_prefix(imagenet, i)}


def _gpt2_alternatives(key: str) -> list[str]:
    # HF base-model checkpoints (e.g. the original ``gpt2`` weights) have no ``transformer.`` prefix
    # and store the tied LM head only as the token embedding.
    alts = [key.removeprefix("transformer.")] if key.startswith("transformer.") else []
    if key == "lm_head.weight":
        alts += ["transformer.wte.weight", "wte.weight"]
    return alts


_R56_COMMON: dict[str, Any] = dict(
    arch="resnet56",
    block_names=resnet.resnet_block_names(False),
    make_block=lambda i: resnet.make_resnet_block(False, i),
    key_map=_resnet_map(False),
    make_monolithic=resnet.ResNetCifar,
    input_dtype=torch.float32,
)

SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="tiny",
            arch="tiny",
            description="4-block CNN on 3x32x32 for fast tests",
            block_names=tiny.TINY_BLOCK_NAMES,
            make_block=tiny.make_tiny_block,
            key_map=_prefix_map(tiny.TINY_BLOCK_NAMES),
            make_monolithic=tiny.TinyNet,
            input_shape=(3, 32, 32),
            input_dtype=torch.float32,
            example=lambda b, s: _image(b, s, 32),
        ),
        ModelSpec(
            name="resnet50",
            arch="resnet50",
            description="ResNet-50 v1.5, ImageNet 3x224x224, torchvision keys",
            block_names=resnet.resnet_block_names(True),
            make_block=lambda i: resnet.make_resnet_block(True, i),
            key_map=_resnet_map(True),
            make_monolithic=resnet.ResNetImageNet,
            input_shape=(3, 224, 224),
            input_dtype=torch.float32,
            example=lambda b, s: _image(b, s, 224),
        ),
        ModelSpec(
            name="resnet56",
            description="ResNet-56, CIFAR-10 3x32x32",
            input_shape=(3, 32, 32),
            example=lambda b, s: _image(b, s, 32),
            **_R56_COMMON,
        ),
        ModelSpec(
            name="resnet56-224",
            description="ResNet-56 (same weights) on CIFAR upsampled to 3x224x224",
            input_shape=(3, 224, 224),
            example=_upsampled_cifar,
            **_R56_COMMON,
        ),
        ModelSpec(
            name="gpt2",
            arch="gpt2",
            description=f"GPT-2 small 124M, {gpt2.CONFIG.seq_len} tokens, HF keys",
            block_names=gpt2.gpt2_block_names(),
            make_block=gpt2.make_gpt2_block,
            key_map=gpt2.gpt2_block_key_map,
            make_monolithic=gpt2.GPT2LMHead,
            input_shape=(gpt2.CONFIG.seq_len,),
            input_dtype=torch.int64,
            example=gpt2.gpt2_example_input,
            tied=gpt2.GPT2_TIED,
            alternatives=_gpt2_alternatives,
            head_options=("head_output", "top_k"),
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(SPECS)}") from None


def num_blocks(name: str) -> int:
    return get_spec(name).num_blocks


def block_names(name: str) -> tuple[str, ...]:
    return get_spec(name).block_names


def example_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded example input (images: N(0,1) pixels; GPT-2: uniform random token ids)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return get_spec(name).example(batch, seed)


# ------------------------------------------------------------------------------------------ build


def _full_key_fn(key_map: dict[str, str], tied: dict[str, str] | None = None) -> Callable[[str], str]:
    prefixes = sorted(key_map, key=len, reverse=True)

    def full_key(local: str) -> str:
        for lp in prefixes:
            if local.startswith(lp):
                key = key_map[lp] + local[len(lp) :]
                return tied.get(key, key) if tied else key
        raise KeyError(local)  # pragma: no cover - every map has a catch-all or covers its keys

    return full_key


class BlockChain(nn.Module):
    """Blocks ``[start, end)`` of ``model``, run in sequence. ``blocks[k]`` is global block ``start + k``."""

    def __init__(self, spec: ModelSpec, start: int, end: int, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.model_name = spec.name
        self.start = start
        self.end = end
        self.blocks = nn.ModuleList(blocks)
        self._key_maps = [spec.key_map(i) for i in range(start, end)]

    def forward(self, x: BlockOutput) -> BlockOutput:
        for block in self.blocks:
            x = block(x)
        return x

    def full_key(self, local_block: int, local_key: str) -> str:
        """Name of ``blocks[local_block]``'s tensor ``local_key`` in the monolithic state_dict."""
        return _full_key_fn(self._key_maps[local_block])(local_key)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """This range's tensors under their monolithic (torchvision / HF) names."""
        out: dict[str, torch.Tensor] = {}
        for k, block in enumerate(self.blocks):
            for local, tensor in block.state_dict().items():
                out[self.full_key(k, local)] = tensor
        return out

    def extra_repr(self) -> str:
        return f"model={self.model_name!r}, blocks=[{self.start}, {self.end})"


def _head_options(spec: ModelSpec, head_output: str | None, top_k: int | None) -> dict[str, Any]:
    opts = {"head_output": head_output, "top_k": top_k}
    opts = {k: v for k, v in opts.items() if v is not None}
    if opts and not spec.head_options:
        if opts.get("head_output", "logits") == "logits" and "top_k" not in opts:
            return {}
        raise ValueError(f"model {spec.name!r} has no head options (got {sorted(opts)}); its head returns logits")
    return opts


def _load_into(
    module: nn.Module,
    full_key: Callable[[str], str],
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    source: str,
) -> None:
    """Copy the checkpoint tensors of ``module`` (named by ``full_key``) into it."""
    local_state = module.state_dict()
    wanted = [(full_key(k), t.shape) for k, t in local_state.items() if not k.endswith("num_batches_tracked")]
    picked = select(state, wanted, alternatives=spec.alternatives, source=source)
    with torch.no_grad():
        for local, tensor in local_state.items():
            key = full_key(local)
            if key in picked:
                tensor.copy_(picked[key].to(dtype=tensor.dtype))
            elif local.endswith("num_batches_tracked"):
                tensor.copy_(state.get(key, torch.zeros((), dtype=torch.int64)))


def build_blocks(
    name: str,
    start: int,
    end: int,
    *,
    seed: int = 0,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    head_output: str | None = None,
    top_k: int | None = None,
) -> BlockChain:
    """Build blocks ``[start, end)`` of ``name`` (only those), in eval mode, without gradients.

    ``head_output`` / ``top_k`` configure the GPT-2 head (see :mod:`.gpt2`); ``device="meta"`` builds a
    weightless shape-only chain (used for FLOP counting).
    """
    spec = get_spec(name)
    n = spec.num_blocks
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= n):
        raise ValueError(f"{name}: block range [{start}, {end}) is not a non-empty range within [0, {n})")
    dev = check_device(device)
    opts = _head_options(spec, head_output, top_k)
    with torch.device("meta"):
        blocks = [spec.make_block(i, **opts) if i == n - 1 else spec.make_block(i) for i in range(start, end)]
    chain = BlockChain(spec, start, end, blocks)
    if dev.type != "meta":
        chain.to_empty(device=dev)
        state = read_state_dict(weights) if weights is not None else None
        for k, block in enumerate(chain.blocks):
            key_map = spec.key_map(start + k)
            if state is None:
                init_seeded(block, seed=seed, arch=spec.arch, full_key=_full_key_fn(key_map, spec.tied))
            else:
                _load_into(block, _full_key_fn(key_map), spec, state, str(weights))
    return chain.eval().requires_grad_(False)


def build_model(
    name: str, *, seed: int = 0, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """The monolithic model (its own ``forward``; GPT-2 returns all logits), same weights as the blocks."""
    spec = get_spec(name)
    dev = check_device(device)
    with torch.device("meta"):
        model = spec.make_monolithic()
    if dev.type != "meta":
        model.to_empty(device=dev)
        if hasattr(model, "tie_weights"):
            model.tie_weights()  # to_empty() unties shared parameters
        if weights is None:
            init_seeded(model, seed=seed, arch=spec.arch, full_key=lambda k: spec.tied.get(k, k))
        else:
            _load_into(model, lambda k: k, spec, read_state_dict(weights), str(weights))
    return model.eval().requires_grad_(False)


def state_bytes(module: nn.Module) -> int:
    """Bytes of a module's weights: parameters and buffers (what a node must hold in memory).

    Tied parameters count once (``named_parameters`` de-duplicates them).
    """
    tensors = [p for _, p in module.named_parameters()] + [b for _, b in module.named_buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "SPECS",
    "BlockChain",
    "BlockOutput",
    "ModelSpec",
    "WeightsError",
    "block_infos",
    "block_names",
    "build_blocks",
    "build_model",
    "count_params",
    "example_input",
    "get_spec",
    "model_profile",
    "num_blocks",
    "state_bytes",
]


# ------------------------------------------------------------------------------------- profiles


def block_infos(
    name: str, batch: int = 1, *, head_output: str | None = None, top_k: int | None = None
) -> list[BlockProfile]:
    """Per-block FLOPs (counted, see :mod:`.flops`), weight bytes and output shape/bytes; no times.

    ``out_shape`` of a tuple output (the GPT-2 top-k head) is the shape of its first element;
    ``out_bytes`` always covers every tensor of the output.
    """
    spec = get_spec(name)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    chain = build_blocks(name, 0, spec.num_blocks, device="meta", head_output=head_output, top_k=top_k)
    x: BlockOutput = torch.empty((batch, *spec.input_shape), dtype=spec.input_dtype, device="meta")
    infos = []
    for i, block in enumerate(chain.blocks):
        flops, x = count_flops(block, x)
        infos.append(
            BlockProfile(
                index=i,
                name=spec.block_names[i],
                flops=flops,
                param_bytes=state_bytes(block),
                out_shape=tuple(output_tensors(x)[0].shape),
                out_bytes=output_nbytes(x),
            )
        )
    return infos


def model_profile(
    name: str, batch: int = 1, *, head_output: str | None = None, top_k: int | None = None
) -> ModelProfile:
    """The timing-free profile of ``name`` at ``batch`` (what the allocator needs besides speed)."""
    spec = get_spec(name)
    blocks = block_infos(name, batch, head_output=head_output, top_k=top_k)
    itemsize = torch.empty((), dtype=spec.input_dtype).element_size()
    input_shape = (batch, *spec.input_shape)
    return ModelProfile(
        model=name,
        batch=batch,
        input_shape=input_shape,
        input_bytes=itemsize * batch * int(torch.Size(spec.input_shape).numel()),
        result_bytes=blocks[-1].out_bytes,
        blocks=tuple(blocks),
    )

"""Exactness check of the partitioning: blocks run one by one vs the monolithic forward.

Each block is built on its own (``build_blocks(name, i, i + 1)``: its own weight draw, as a node holding
only that block would) and the chain is fed the same seeded input as the monolithic model, whose own
``forward`` is a separate code path. Both use the same kernels on the same data, so on CPU the outputs
are expected to be bitwise equal (max_abs_diff == 0.0). GPT-2 is compared on its full logits
(``head_output="logits"``), the strictest output, and on its top-k next tokens. With ``device="cuda"``
the blocks run on the GPU and the reference stays on the CPU: other kernels, so a small difference
(1e-5) is expected and the CLI's tolerance for a GPU is 1e-4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from pamdi_node.models import MODEL_NAMES
from pamdi_node.models.zoo import build_blocks, build_model, example_input, get_spec

DEFAULT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class VerifyResult:
    model: str
    blocks: int
    max_abs_diff: float
    max_abs_output: float
    tolerance: float
    device: str = "cpu"  # where the blocks ran (the monolithic reference always runs on the CPU)
    # Models with a top-k head (GPT-2): whether the chained run's top-k next tokens are the
    # reference's, in order (None for the others). Float noise on a GPU may move logits by 1e-5;
    # the answer a user sees must not change.
    topk_equal: bool | None = None

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.topk_equal is not False

    def as_dict(self) -> dict[str, float | int | str | bool | None]:
        return {**asdict(self), "ok": self.ok}


TOP_K = 5


def verify_model(
    name: str, *, seed: int = 0, batch: int = 1, tolerance: float = DEFAULT_TOLERANCE, device: str = "cpu"
) -> VerifyResult:
    """Blocks one by one on ``device`` against the monolithic model on the CPU."""
    spec = get_spec(name)
    n = spec.num_blocks
    x = example_input(name, batch=batch, seed=seed)
    with torch.inference_mode():
        reference = build_model(name, seed=seed, device="cpu")(x)
        h = x.to(device)
        for i in range(n):
            head = {"head_output": "logits"} if spec.head_options and i == n - 1 else {}
            h = build_blocks(name, i, i + 1, seed=seed, device=device, **head)(h)
        h = h.to("cpu") if isinstance(h, torch.Tensor) else h
    if not isinstance(h, torch.Tensor) or h.shape != reference.shape:
        raise AssertionError(f"{name}: chained output {getattr(h, 'shape', type(h))} != monolithic {reference.shape}")
    diff = (h.float() - reference.float()).abs().max().item()
    topk_equal = None
    if spec.head_options:  # logits (batch, tokens, vocab): the next token's top-k, as the head gives it
        topk_equal = bool(torch.equal(torch.topk(h[:, -1].float(), TOP_K).indices,
                                      torch.topk(reference[:, -1].float(), TOP_K).indices))
    return VerifyResult(name, n, float(diff), float(reference.abs().max().item()), tolerance,
                        device=str(device), topk_equal=topk_equal)


def verify_models(
    names: list[str] | tuple[str, ...] | None = None, **kwargs: object
) -> dict[str, VerifyResult]:
    return {name: verify_model(name, **kwargs) for name in (names or MODEL_NAMES)}  # type: ignore[arg-type]

"""Loading real weights (torchvision / Hugging Face state_dicts) into full or partial models.

A node that builds blocks ``i..j`` reads the checkpoint and keeps only the tensors of its blocks.
Accepted files: ``torch.save`` state_dicts (``.pt``, ``.pth``, ``.bin``; optionally wrapped in
``{"state_dict": ...}`` or ``{"model": ...}`` and with a ``module.`` DataParallel prefix) and
``.safetensors`` files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import torch


class WeightsError(ValueError):
    """A weights file is unreadable or lacks / mis-shapes a tensor the built blocks need."""


class _LazySafetensors(Mapping[str, torch.Tensor]):
    """A ``.safetensors`` file read tensor by tensor: a node reads only its blocks' tensors."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt", device="cpu")
        self._keys = {_strip(k): k for k in self._file.keys()}  # noqa: SIM118 - safe_open is not a dict

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._file.get_tensor(self._keys[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _strip(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def read_state_dict(path: str | Path) -> Mapping[str, torch.Tensor]:
    """The tensors of a checkpoint, read lazily where the format allows it.

    torch zip checkpoints are memory-mapped (``mmap=True``) and safetensors files are opened per
    tensor, so building a few blocks touches only their bytes, however large the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return _LazySafetensors(path)
        except ImportError as err:  # pragma: no cover - safetensors ships with transformers
            raise WeightsError(f"{path}: reading .safetensors needs the 'safetensors' package") from err
        except Exception as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as err:
        raise WeightsError(f"{path}: not a readable torch state_dict ({err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a mapping of tensor names to tensors")
    return {_strip(k): v for k, v in state.items()}


def select(
    state: Mapping[str, torch.Tensor],
    wanted: Iterable[tuple[str, torch.Size]],
    *,
    alternatives: Callable[[str], list[str]],
    source: str,
) -> dict[str, torch.Tensor]:
    """Pick the tensors for the ``(full key, shape)`` pairs in ``wanted`` out of ``state``.

    ``alternatives(key)`` lists other names the same tensor may have in a checkpoint (e.g. HF base-model
    files without the ``transformer.`` prefix, or a tied LM head stored only as ``wte``).
    """
    picked: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key, shape in wanted:
        for candidate in (key, *alternatives(key)):
            if candidate in state:
                tensor = state[candidate]
                if tuple(tensor.shape) != tuple(shape):
                    raise WeightsError(
                        f"{source}: tensor {candidate!r} has shape {tuple(tensor.shape)}, block expects {tuple(shape)}"
                    )
                picked[key] = tensor
                break
        else:
            missing.append(key)
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise WeightsError(f"{source}: missing {len(missing)} tensor(s) needed by the built blocks: {shown}")
    return picked

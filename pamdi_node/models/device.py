"""Where a node's blocks run: ``cpu`` or a GPU (``cuda``, ``cuda:N``), checked in one line."""

from __future__ import annotations

import torch


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device; a ValueError in one line when it cannot be used here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}: expected cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"unsupported device {str(device)!r}: expected cpu or cuda[:N]")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "a CPU-only build" if torch.version.cuda is None else "no usable GPU"
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available here "
                             f"(torch {torch.__version__}: {why})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"device {str(device)!r} requested but this machine has {count} GPU(s)")
    return dev

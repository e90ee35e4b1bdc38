"""Suite-wide markers that depend on the machine: ``cuda`` tests run only where torch sees a GPU."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda:
        return
    import torch

    if torch.cuda.is_available():
        return
    why = "CPU-only torch build" if torch.version.cuda is None else "no usable GPU"
    skip = pytest.mark.skip(reason=f"needs CUDA (torch {torch.__version__}: {why}); scripts/gpu-check.sh runs these")
    for item in cuda:
        item.add_marker(skip)

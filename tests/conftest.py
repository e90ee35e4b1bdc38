"""Suite-wide settings that depend on the machine: ``cuda`` tests run only where torch sees a GPU,
and the Ctrl-C tests' children can be interrupted however the suite was launched."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a non-interactive shell (`cmd &`, some CI launchers)
    # inherits SIGINT ignored, and so would every child it starts: Python then installs no
    # KeyboardInterrupt handler and the tests that press Ctrl-C on `pamdi emulate` wait in vain.
    # A handler (unlike SIG_IGN) is reset to the default in an exec'd child, so the children get
    # the SIGINT behaviour a user's terminal gives them.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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

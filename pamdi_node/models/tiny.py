"""``tiny``: a 4-block CNN on 3x32x32 inputs that runs in about a millisecond, for fast tests.

Blocks: ``stem`` (conv 3->16, stride 2, ReLU), ``conv2`` (conv 16->32, stride 2, ReLU),
``res3`` (conv 32->32 + ReLU with a residual add), ``head`` (global average pool, flatten, linear
32->10). Key names: ``stem.conv``, ``conv2.conv``, ``res3.conv``, ``head.fc``.
"""

from __future__ import annotations

import torch
from torch import nn

TINY_BLOCK_NAMES = ("stem", "conv2", "res3", "head")


class ConvReLU(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv(x))
        return out + x if self.residual else out


class TinyHead(nn.Module):
    def __init__(self, features: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def make_tiny_block(index: int) -> nn.Module:
    return (
        ConvReLU(3, 16, 2),
        ConvReLU(16, 32, 2),
        ConvReLU(32, 32, 1, residual=True),
        TinyHead(),
    )[index]


class TinyNet(nn.Module):
    """Monolithic form with its own forward (the same layers, written out)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvReLU(3, 16, 2)
        self.conv2 = ConvReLU(16, 32, 2)
        self.res3 = ConvReLU(32, 32, 1, residual=True)
        self.head = TinyHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem.conv(x))
        x = torch.relu(self.conv2.conv(x))
        x = torch.relu(self.res3.conv(x)) + x
        return self.head.fc(x.mean(dim=(2, 3)))

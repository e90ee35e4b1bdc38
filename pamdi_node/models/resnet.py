"""ResNets in plain torch (torchvision cannot be imported beside torch 2.13 here).

- ``resnet50``: the ImageNet ResNet-50 v1.5 (stride on the 3x3 conv) with torchvision's state_dict key
  names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer4.2.bn3``, ``layerN.0.downsample.{0,1}``,
  ``fc``), so a torchvision checkpoint loads unchanged. Blocks: stem (conv1, bn1, relu, maxpool),
  the 16 bottlenecks, head (avgpool, flatten, fc) = 18 blocks.
- ``resnet56``: the CIFAR-10 ResNet-56 of He et al. (3x3 stem with 16 channels, 3 stages x 9
  BasicBlocks with 16/32/64 channels, global average pool, 10-way classifier). Key names follow
  chenyaofo/pytorch-cifar-models (``conv1``, ``bn1``, ``layerN.M.conv1/bn1/conv2/bn2``,
  ``layerN.0.downsample.{0,1}`` = 1x1 conv + BN projection shortcut, ``fc``), the most used
  pretrained CIFAR ResNet-56 checkpoints. Blocks: stem + 27 BasicBlocks + head = 29 blocks.

The monolithic classes (:class:`ResNetImageNet`, :class:`ResNetCifar`) have their own ``forward``;
the partitioned path chains :class:`Stem`, the residual blocks and :class:`Head`, so ``pamdi models
verify`` compares two different compositions of the same layers.
"""

from __future__ import annotations

import torch
from torch import nn

from pamdi_node.models.seeding import InitRule

# ---------------------------------------------------------------------------------------------- layers


def _residual_bn_rule(name: str, tensor: torch.Tensor) -> InitRule | None:
    """Random init of a residual branch's last BN: a small scale keeps deep random nets' activations
    in a sane range (each block would otherwise double their variance: 2^27 for ResNet-56)."""
    return InitRule.uniform(0.2, 0.4) if name == "weight" else None


def _mark_residual_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    bn.pamdi_init_rule = _residual_bn_rule  # consulted by seeding.default_rule
    return bn



def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (v1.5: the stride sits on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, cout)
        self.bn3 = _mark_residual_bn(nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    """The CIFAR ResNet basic block (two 3x3 convs), projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = _mark_residual_bn(nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Stem(nn.Module):
    """First block: conv1 + bn1 + relu (+ maxpool for ImageNet ResNets)."""

    def __init__(self, imagenet: bool) -> None:
        super().__init__()
        if imagenet:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
        else:
            self.conv1 = conv3x3(3, 16)
            self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if imagenet else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class Head(nn.Module):
    """Last block: global average pool, flatten, the classifier ``fc``; returns the class logits."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------- layouts

# (stage name, input channels, width, stride) of every residual block, in order.
_R50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)
_R56_STAGES = ((16, 9, 1), (32, 9, 2), (64, 9, 2))


def _r50_layout() -> list[tuple[str, int, int, int]]:
    layout, cin = [], 64
    for s, (width, count, stride) in enumerate(_R50_STAGES, start=1):
        for b in range(count):
            layout.append((f"layer{s}.{b}", cin, width, stride if b == 0 else 1))
            cin = width * Bottleneck.expansion
    return layout


def _r56_layout() -> list[tuple[str, int, int, int]]:
    layout, cin = [], 16
    for s, (width, count, stride) in enumerate(_R56_STAGES, start=1):
        for b in range(count):
            layout.append((f"layer{s}.{b}", cin, width, stride if b == 0 else 1))
            cin = width
    return layout


R50_LAYOUT = _r50_layout()
R56_LAYOUT = _r56_layout()


def resnet_block_names(imagenet: bool) -> tuple[str, ...]:
    layout = R50_LAYOUT if imagenet else R56_LAYOUT
    return ("stem", *(name for name, *_ in layout), "head")


def resnet_block_prefix(imagenet: bool, index: int) -> str:
    """Prefix of block ``index``'s keys in the monolithic state_dict ('' for stem and head)."""
    names = resnet_block_names(imagenet)
    if index in (0, len(names) - 1):
        return ""
    return names[index] + "."


def make_resnet_block(imagenet: bool, index: int) -> nn.Module:
    layout = R50_LAYOUT if imagenet else R56_LAYOUT
    if index == 0:
        return Stem(imagenet)
    if index == len(layout) + 1:
        return Head(2048, 1000) if imagenet else Head(64, 10)
    _, cin, width, stride = layout[index - 1]
    return Bottleneck(cin, width, stride) if imagenet else BasicBlock(cin, width, stride)


# ------------------------------------------------------------------------------------ monolithic


class ResNetImageNet(nn.Module):
    """Monolithic ResNet-50 laid out exactly like torchvision's ``resnet50()``."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: dict[str, list[nn.Module]] = {}
        for name, cin, width, stride in R50_LAYOUT:
            stages.setdefault(name.split(".")[0], []).append(Bottleneck(cin, width, stride))
        self.layer1 = nn.Sequential(*stages["layer1"])
        self.layer2 = nn.Sequential(*stages["layer2"])
        self.layer3 = nn.Sequential(*stages["layer3"])
        self.layer4 = nn.Sequential(*stages["layer4"])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNetCifar(nn.Module):
    """Monolithic CIFAR ResNet-56 (any input size: the pool before ``fc`` is global)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages: dict[str, list[nn.Module]] = {}
        for name, cin, width, stride in R56_LAYOUT:
            stages.setdefault(name.split(".")[0], []).append(BasicBlock(cin, width, stride))
        self.layer1 = nn.Sequential(*stages["layer1"])
        self.layer2 = nn.Sequential(*stages["layer2"])
        self.layer3 = nn.Sequential(*stages["layer3"])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))

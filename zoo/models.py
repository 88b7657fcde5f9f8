"""The zoo's networks: plain nn.Modules taking (N, C, H, W) images, by default the
datasets' (zoo.records.INPUT_SHAPE: one channel of 28 x 28, the shape comments' sizes), and
returning one logit per class. Every layer's size is derived from the input shape."""

from __future__ import annotations

import torch
from torch import nn

from .records import INPUT_SHAPE, NUM_CLASSES
from .registry import register_model
from .summary import spatial_size


class LeNet5(nn.Module):
    """LeNet-5 as most courses teach it today: ReLU and max pooling.

    The first convolution pads by 2, which is what LeCun got by drawing MNIST's 28 x 28
    digits into a 32 x 32 field; the rest follows the 1998 paper's layer sizes.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 6, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(kernel_size=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        h, w = spatial_size((height, width), self.conv1, self.pool1, self.conv2, self.pool2)
        self.fc1 = nn.Linear(self.conv2.out_channels * h * w, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, 6, 28, 28)
        x = self.relu1(x)
        x = self.pool1(x)  # (N, 6, 14, 14)
        x = self.conv2(x)  # (N, 16, 10, 10)
        x = self.relu2(x)
        x = self.pool2(x)  # (N, 16, 5, 5)
        x = self.flatten(x)  # (N, 400)
        x = self.fc1(x)  # (N, 120)
        x = self.relu3(x)
        x = self.fc2(x)  # (N, 84)
        x = self.relu4(x)
        x = self.fc3(x)  # (N, 10)
        return x


class LeNet5Classic(nn.Module):
    """LeCun et al. (1998) flavour: tanh activations and 2 x 2 average pooling.

    The paper's subsampling layers had a trainable coefficient and bias and C3 used a
    partial connection table; we keep the plain average pool and full connections,
    as is usual, so the layer sizes and the character of the network stay the same.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 6, kernel_size=5, padding=2)
        self.tanh1 = nn.Tanh()
        self.pool1 = nn.AvgPool2d(kernel_size=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.tanh2 = nn.Tanh()
        self.pool2 = nn.AvgPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        h, w = spatial_size((height, width), self.conv1, self.pool1, self.conv2, self.pool2)
        self.fc1 = nn.Linear(self.conv2.out_channels * h * w, 120)
        self.tanh3 = nn.Tanh()
        self.fc2 = nn.Linear(120, 84)
        self.tanh4 = nn.Tanh()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, 6, 28, 28)
        x = self.tanh1(x)
        x = self.pool1(x)  # (N, 6, 14, 14)
        x = self.conv2(x)  # (N, 16, 10, 10)
        x = self.tanh2(x)
        x = self.pool2(x)  # (N, 16, 5, 5)
        x = self.flatten(x)  # (N, 400)
        x = self.fc1(x)  # (N, 120)
        x = self.tanh3(x)
        x = self.fc2(x)  # (N, 84)
        x = self.tanh4(x)
        x = self.fc3(x)  # (N, 10)
        return x


class TwoBlockCNN(nn.Module):
    """The two-block CNN of the Keras Fashion-MNIST tutorials.

    Conv 3x3 32 'same' -> max-pool 2 -> conv 3x3 64 'same' -> max-pool 2 -> dense 100 ->
    dropout 0.4 -> dense 10.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.4,
                 input_shape: tuple[int, int, int] = INPUT_SHAPE) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(kernel_size=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        h, w = spatial_size((height, width), self.conv1, self.pool1, self.conv2, self.pool2)
        self.fc1 = nn.Linear(self.conv2.out_channels * h * w, 100)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, 32, 28, 28)
        x = self.relu1(x)
        x = self.pool1(x)  # (N, 32, 14, 14)
        x = self.conv2(x)  # (N, 64, 14, 14)
        x = self.relu2(x)
        x = self.pool2(x)  # (N, 64, 7, 7)
        x = self.flatten(x)  # (N, 3136)
        x = self.fc1(x)  # (N, 100)
        x = self.relu3(x)
        x = self.dropout(x)
        x = self.fc2(x)  # (N, 10)
        return x


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias: batch norm supplies it), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv + batch norm layers with an identity shortcut (He et al., 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        y = self.bn1(y)
        y = self.relu1(y)
        y = self.conv2(y)
        y = self.bn2(y)
        y = y + x
        return self.relu2(y)


class ResNetMini(nn.Module):
    """A small modern CNN: batch norm, stride-2 downsampling, one residual block per
    stage and global average pooling, so the head has no spatial size baked in.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 24,
                 input_shape: tuple[int, int, int] = INPUT_SHAPE) -> None:
        super().__init__()
        self.stem = ConvBNReLU(input_shape[0], width)
        self.down1 = ConvBNReLU(width, 2 * width, stride=2)
        self.block1 = ResidualBlock(2 * width)
        self.down2 = ConvBNReLU(2 * width, 4 * width, stride=2)
        self.block2 = ResidualBlock(4 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, 24, 28, 28)  with the default width of 24
        x = self.down1(x)  # (N, 48, 14, 14)
        x = self.block1(x)
        x = self.down2(x)  # (N, 96, 7, 7)
        x = self.block2(x)
        x = self.pool(x)  # (N, 96, 1, 1)
        x = self.flatten(x)  # (N, 96)
        x = self.fc(x)  # (N, 10)
        return x


Shape = tuple[int, int, int]


@register_model("lenet5")
def lenet5(*, num_classes: int = NUM_CLASSES, input_shape: Shape = INPUT_SHAPE) -> LeNet5:
    return LeNet5(num_classes, input_shape)


@register_model("lenet5-classic")
def lenet5_classic(*, num_classes: int = NUM_CLASSES, input_shape: Shape = INPUT_SHAPE) -> LeNet5Classic:
    return LeNet5Classic(num_classes, input_shape)


@register_model("twoblock-cnn")
def twoblock_cnn(*, num_classes: int = NUM_CLASSES, dropout: float = 0.4,
                 input_shape: Shape = INPUT_SHAPE) -> TwoBlockCNN:
    return TwoBlockCNN(num_classes, dropout, input_shape)


@register_model("resnet-mini")
def resnet_mini(*, num_classes: int = NUM_CLASSES, width: int = 24, input_shape: Shape = INPUT_SHAPE) -> ResNetMini:
    return ResNetMini(num_classes, width, input_shape)

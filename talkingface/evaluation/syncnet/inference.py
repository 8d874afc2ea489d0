"""An inference-only form of SyncNet: the same function, laid out for fast CPU convolution.

The lip stream of ``syncnet_v2`` is written with Conv3d, but only its first layer looks across time
(kernel depth 5 over a 5-frame window, output depth 1); every later layer has depth 1. So the stream is
exactly a 2-D network whose first convolution reads the 5 frames' 15 channels stacked. With each
BatchNorm (eval mode) folded into the convolution or linear layer before it and channels-last tensors,
oneDNN runs it at about the speed of a large matmul instead of PyTorch's slower 3-D path
(``benchmarks/evaluation_speed.py``). Outputs equal the original network's to float32 rounding.
"""
from __future__ import annotations

import torch
from torch import nn

from .network import SyncNet


def _fold(weight: torch.Tensor, bias: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """Weight and bias of a layer followed by eval-mode ``bn``, as one layer."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.reshape(shape), (bias - bn.running_mean) * scale + bn.bias


def _conv2d(weight: torch.Tensor, bias: torch.Tensor, stride, padding) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv


def _pair(value) -> tuple[int, int]:
    """The last two entries of a 3-D pooling/conv argument, or an int repeated."""
    return tuple(value[-2:]) if isinstance(value, tuple) else (value, value)


def _flatten_stream(layers: nn.Sequential) -> nn.Sequential:
    """Conv(2d|3d)-BN-ReLU blocks and max pools as 2-D layers with folded BatchNorm."""
    out: list[nn.Module] = []
    items = list(layers)
    i = 0
    while i < len(items):
        layer = items[i]
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            bn = items[i + 1]
            weight = layer.weight
            if weight.dim() == 5:  # (out, in, depth, kh, kw) -> (out, in * depth, kh, kw): channel c, frame t at c*depth+t
                weight = weight.reshape(weight.shape[0], -1, *weight.shape[3:])
            weight, bias = _fold(weight, layer.bias, bn)
            out += [_conv2d(weight, bias, _pair(layer.stride), _pair(layer.padding)), nn.ReLU(inplace=True)]
            i += 3  # conv, batch norm, relu
        elif isinstance(layer, (nn.MaxPool2d, nn.MaxPool3d)):
            out.append(nn.MaxPool2d(_pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)))
            i += 1
        else:
            raise TypeError(f"unexpected layer {layer!r} in a SyncNet stream")
    return nn.Sequential(*out)


def _head(head: nn.Sequential) -> nn.Sequential:
    """Linear-BN-ReLU-Linear as Linear-ReLU-Linear."""
    first, bn, _, last = head
    weight, bias = _fold(first.weight, first.bias, bn)
    folded = nn.Linear(first.in_features, first.out_features)
    folded.weight.data.copy_(weight)
    folded.bias.data.copy_(bias)
    return nn.Sequential(folded, nn.ReLU(), last)


class SyncNetInference(nn.Module):
    """Eval-mode SyncNet as 2-D convolutions with folded BatchNorm, channels-last."""

    def __init__(self, net: SyncNet):
        super().__init__()
        net = net.eval()
        with torch.no_grad():
            self.lip = _flatten_stream(net.netcnnlip)
            self.lip_head = _head(net.netfclip)
            self.aud = _flatten_stream(net.netcnnaud)
            self.aud_head = _head(net.netfcaud)
        self.eval().requires_grad_(False)
        self.to(memory_format=torch.channels_last)

    def forward_lip(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, 15, 224, 224)``: 5 BGR frames stacked channel-major (``c * 5 + t``) -> ``(B, 1024)``."""
        return self.lip_head(self.lip(windows.contiguous(memory_format=torch.channels_last)).flatten(1))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 13, 20)`` int16-scale MFCC windows -> ``(B, 1024)``."""
        return self.aud_head(self.aud(mfcc.contiguous(memory_format=torch.channels_last)).flatten(1))

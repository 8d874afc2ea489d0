import pytest
import torch
from torch import nn

from talkingface.errors import ConfigError
from talkingface.training.optimization import OptimizationContext
from talkingface.training import resolve_device


def test_accumulation_steps_only_at_the_window_end_with_averaged_gradients():
    torch.manual_seed(0)
    layer = nn.Linear(3, 1, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    context = OptimizationContext(accumulation=2)
    inputs = torch.randn(4, 3)
    start = layer.weight.detach().clone()
    stepped = []
    for half in (inputs[:2], inputs[2:]):
        context.backward(layer(half).pow(2).mean())
        stepped.append(context.step(optimizer))
        context.finish_micro_step()
    assert stepped == [False, True]
    full = start.clone().requires_grad_(True)
    (inputs @ full.T).pow(2).mean().backward()
    torch.testing.assert_close(layer.weight.detach(), start - full.grad)
    assert layer.weight.grad is None  # zeroed after the step


def test_frozen_blocks_gradients_and_restores_flags():
    from talkingface_example import ExampleInpainter

    model = ExampleInpainter({"example_inpainter": {"channels": 8}})
    discriminator = nn.Linear(2, 1)
    discriminator.bias.requires_grad_(False)
    with model.frozen(discriminator):
        assert not any(p.requires_grad for p in discriminator.parameters())
        loss = discriminator(torch.ones(1, 2)).sum()
        assert not loss.requires_grad
    assert discriminator.weight.requires_grad and not discriminator.bias.requires_grad


def test_bfloat16_autocast_path_runs_on_cpu():
    layer = nn.Linear(4, 4)
    context = OptimizationContext(amp=True, amp_dtype=torch.bfloat16, device_type="cpu")
    assert not context.scaler.is_enabled()  # loss scaling is for float16 only
    with context.autocast(torch.device("cpu")):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    context.backward(out.float().pow(2).mean())
    assert context.step(optimizer, clip_grad_norm=1.0)


def test_default_clip_comes_from_the_context():
    layer = nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    context = OptimizationContext(clip_grad_norm=0.5)
    start = layer.weight.detach().clone()
    context.backward(layer(torch.full((1, 4), 100.0)).sum())
    context.step(optimizer)
    assert torch.linalg.vector_norm(layer.weight.detach() - start).item() == pytest.approx(0.5, rel=1e-5)


def test_no_amp_means_no_autocast():
    context = OptimizationContext(amp=False)
    with context.autocast(torch.device("cpu")):
        assert nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32
    with pytest.raises(ValueError):
        OptimizationContext(accumulation=0)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a valid torch device"):
        resolve_device("quantum")

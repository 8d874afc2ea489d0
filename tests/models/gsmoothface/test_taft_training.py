"""TAFT's training (``talkingface.models.gsmoothface.taft_training``): PIRender's multi-scale perceptual loss against an
independent float64 computation written from imaginaire's ``loss/perceptual.py`` (GSmoothFace_TAFT 999d1f5), the
EMA update against a hand computation, the release's defaults, the fallbacks, and one optimisation step of a tiny
generator.

No VGG19 weights exist offline, so the perceptual parity runs on a random Vgg19Features with torchvision's layout
(same 37 modules, so the same ReLU/pooling indices) and narrow widths (8…64 channels instead of 64…512, built by
patching ``VGG19_CONFIG`` while it is constructed): the loss does not depend on the widths, and the narrow net makes
the four scales of a 128×128 pair (the smallest size relu5_1 allows at 4 scales) cost ~0.15 s in float64.
The whole file runs in about 2 s on one thread.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from talkingface.errors import CheckpointError, ConfigError
from talkingface.models.common import vgg as vgg_module
from talkingface.models.common.vgg import Vgg19Features
from talkingface.models.gsmoothface import taft_training as tt
from talkingface.models.gsmoothface.networks import TaftGenerator

from breaks import mutated
from numerics import REL64, assert_close64, fp32_bound, max_abs_diff, scale_of, seeded_fill_

NARROW_VGG19 = (8, 8, "M", 16, 16, "M", 32, 32, 32, 32, "M", 64, 64, 64, 64, "M", 64, 64, 64, 64, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def narrow_vgg(seed: int = 7) -> Vgg19Features:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vgg_module, "VGG19_CONFIG", NARROW_VGG19)
        net = Vgg19Features()
    seeded_fill_(net, torch.Generator().manual_seed(seed))  # float64 draws rounded once: the same bytes everywhere
    return net.eval()


@pytest.fixture(scope="module")
def vgg64() -> Vgg19Features:
    return narrow_vgg().double()


def signed_images(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1


# ---- the independent reference (written from imaginaire's PerceptualLoss.forward and the HDTF config) ----------------
def reference_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """relu1_1 … relu5_1 of VGG19: blocks of 2, 2, 4, 4, 4 3×3 convs (pad 1) + ReLU, 2×2 max pooling between blocks;
    the first ReLU of each block is kept. Uses only the conv tensors of ``net``."""
    convs = iter([m for m in net.features if isinstance(m, nn.Conv2d)])
    kept = []
    for block, count in enumerate((2, 2, 4, 4, 4)):
        if block:
            x = F.max_pool2d(x, 2)
        for j in range(count if block < 4 else 1):  # nothing after relu5_1 is used
            conv = next(convs)
            x = torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
            if j == 0:
                kept.append(x)
    return kept


def reference_loss(net: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ over 4 scales and 5 layers of mean |Δ features| + 250 · Σ over the layers at full size of mean |Δ Gram|
    (Gram / (C·H·W)), on ImageNet-normalised (x + 1) / 2, halving by 2×2 averages (what bilinear ×0.5 with
    align_corners=False computes on even sizes)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=fake.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=fake.dtype).view(1, 3, 1, 1)
    x, y = ((fake + 1) / 2 - mean) / std, ((real + 1) / 2 - mean) / std
    perceptual, style = fake.new_zeros(()), fake.new_zeros(())
    for scale in range(4):
        for a, b in zip(reference_features(net, x), reference_features(net, y.detach())):
            b = b.detach()
            perceptual = perceptual + (a - b).abs().mean()
            if scale == 0:
                c, h, w = a.shape[1:]
                gram_a = torch.einsum("bchw,bdhw->bcd", a, a) / (c * h * w)
                gram_b = torch.einsum("bchw,bdhw->bcd", b, b) / (c * h * w)
                style = style + (gram_a - gram_b).abs().mean()
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return perceptual + 250 * style


def ours_and_grad(net: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> tuple[float, torch.Tensor]:
    fake = fake.clone().requires_grad_()
    loss = tt.pirender_perceptual_loss(net, fake, real)  # the defaults are the HDTF config's
    loss.backward()
    return float(loss.detach()), fake.grad


@pytest.mark.numerics
def test_perceptual_loss_matches_float64_reference_and_breaks_miss(vgg64, monkeypatch):
    """Value and gradient (w.r.t. the generated image) agree to REL64 of their scale; each planted break in our code
    misses that bound by more than 10⁵× (measured: no difference at all unbroken; breaks 4.4e-2 (3 scales), 0.26
    (style at every scale), 0.64 (no normalisation), 0.69 (nearest halving) of the scale against 1e-9)."""
    indices = {i for i, m in enumerate(vgg64.features) if isinstance(m, nn.ReLU)}
    assert set(tt.PIRENDER_VGG19_LAYERS.values()) <= indices and len(vgg64.features) == 37
    g = torch.Generator().manual_seed(1)
    fake, real = signed_images((2, 3, 128, 128), g), signed_images((2, 3, 128, 128), g)
    leaf = fake.clone().requires_grad_()
    expected = reference_loss(vgg64, leaf, real)
    expected.backward()
    expected, expected_grad = float(expected.detach()), leaf.grad

    value, grad = ours_and_grad(vgg64, fake, real)
    assert_close64(value, expected, "perceptual loss")
    assert_close64(grad.numpy(), expected_grad.numpy(), "d loss / d fake")

    breaks = {
        "no ImageNet normalisation": ("imagenet_normalize_signed", "return (unit - mean) / std", "return images"),
        "3 scales instead of 4": ("pirender_perceptual_loss", "for scale in range(num_scales):",
                                  "for scale in range(num_scales - 1):"),
        "style loss at every scale": ("pirender_perceptual_loss", "if use_style_loss and scale == 0:",
                                      "if use_style_loss:"),
        "nearest downsampling": ("halve", 'mode="bilinear", scale_factor=0.5, align_corners=False,',
                                 'mode="nearest", scale_factor=0.5,'),
    }
    bound = REL64 * scale_of(expected)
    for what, (name, old, new) in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, tt, name, old, new)
            with torch.no_grad():
                broken = float(tt.pirender_perceptual_loss(vgg64, fake, real))
        assert abs(broken - expected) > 1e5 * bound, what


def test_perceptual_loss_options_and_size_check(vgg64):
    """Layer weights multiply the per-layer terms, style is off without ``use_style_loss``; images too small for
    relu5_1 at the smallest scale are refused with the size to use."""
    g = torch.Generator().manual_seed(2)
    fake, real = signed_images((1, 3, 16, 16), g), signed_images((1, 3, 16, 16), g)
    plain = tt.pirender_perceptual_loss(vgg64, fake, real, num_scales=1, use_style_loss=False)
    doubled = tt.pirender_perceptual_loss(vgg64, fake, real, num_scales=1, use_style_loss=False,
                                          layer_weights=(2.0,) * 5)
    with_style = tt.pirender_perceptual_loss(vgg64, fake, real, num_scales=1)
    assert_close64(float(doubled), 2 * float(plain))
    assert float(with_style) > float(plain)
    with pytest.raises(ValueError, match="at least 128 pixels"):
        tt.pirender_perceptual_loss(vgg64, fake.repeat(1, 1, 4, 4), real.repeat(1, 1, 4, 4))
    with pytest.raises(ConfigError, match="not VGG19 layers"):
        tt.TaftLossConfig(layers=("relu_6_1",))


def test_ema_update_matches_hand_computation_and_leaves_buffers(monkeypatch):
    """``ema ← d·ema + (1 − d)·net`` with d = 0.5^(32/10000), parameters only; float32 result within 2 roundings
    of the float64 hand value (bound 8·√2·eps32·scale); planted breaks miss it by > 10³× (measured: bound 2.0e-6,
    error 5.9e-8; ``alpha=decay`` 1.35, decay² 3.2e-3)."""
    assert tt.EMA_DECAY == 0.5 ** (32 / 10000) and abs(tt.EMA_DECAY - 0.99778438712) < 1e-10
    assert tt.TaftOptimConfig().ema_decay == tt.EMA_DECAY
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    seeded_fill_(net, g)
    ema = tt.make_ema_generator(net)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), net.state_dict().values()))

    old = {k: v.double().clone() for k, v in ema.named_parameters()}
    seeded_fill_(net, g)  # the trained generator moved (new parameters and new BatchNorm statistics)
    net[1].running_mean.add_(1.0)
    ema_buffers = {k: v.clone() for k, v in ema.named_buffers()}
    new = {k: v.detach().double() for k, v in net.named_parameters()}
    d = 0.5 ** (32 / 10000)
    expected = {k: old[k] * d + new[k] * (1 - d) for k in old}
    bound = fp32_bound(max(scale_of(v.numpy()) for v in expected.values()), terms=2)

    def run() -> float:
        trial = tt.make_ema_generator(net)
        trial.load_state_dict({**{k: v.float() for k, v in old.items()}, **ema_buffers})
        tt.accumulate_ema(trial, net)
        assert all(torch.equal(trial.get_buffer(k), v) for k, v in ema_buffers.items())  # buffers untouched
        return max(max_abs_diff(p.detach().numpy(), expected[k].numpy()) for k, p in trial.named_parameters())

    assert run() <= bound
    with monkeypatch.context() as patch:
        mutated(patch, tt, "accumulate_ema", "alpha=1 - decay", "alpha=decay")
        assert run() > 1e4 * bound
    with monkeypatch.context() as patch:
        mutated(patch, tt, "accumulate_ema", "param.mul_(decay)", "param.mul_(decay ** 2)")
        assert run() > 1e3 * bound

    # three updates towards fixed parameters: ema - net = d³ · (ema₀ - net)
    trial = tt.make_ema_generator(net)
    trial.load_state_dict({**{k: v.float() for k, v in old.items()}, **ema_buffers})
    for _ in range(3):
        tt.accumulate_ema(trial, net)
    for k, p in trial.named_parameters():
        hand = new[k] + d ** 3 * (old[k] - new[k])
        assert max_abs_diff(p.detach().numpy(), hand.numpy()) <= 3 * bound
    tt.accumulate_ema(trial, net, decay=0.0)  # the release's start: a copy
    assert all(torch.equal(p, q) for p, q in zip(trial.parameters(), net.parameters()))


def test_release_defaults():
    loss, optim = tt.TaftLossConfig(), tt.TaftOptimConfig()
    assert (loss.weight_perceptual_final, loss.weight_l1, loss.num_scales, loss.criterion) == (4.0, 1.0, 4, "l1")
    assert loss.layers == ("relu_1_1", "relu_2_1", "relu_3_1", "relu_4_1", "relu_5_1") and loss.layer_weights is None
    assert (loss.use_style_loss, loss.style_to_perceptual, loss.weight_gan) == (True, 250.0, 0.0)
    assert (optim.batch_size, optim.max_epoch, optim.init_gain, optim.scheduler_per_iteration) == (10, 200, 0.02, True)
    net = TaftGenerator(base_nc=4, max_nc=8, descriptor_nc=8, layers=2)
    opt, sched = tt.build_optimizer(net)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], sched.step_size, sched.gamma) == (1e-4, (0.5, 0.999), 300_000, 0.2)
    assert len(group["params"]) == len(list(net.parameters()))
    tt.init_taft_weights_(net)
    assert all(not m.bias.detach().any() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d)))
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in net.modules()
               if type(m).__name__ == "LayerNorm2d")
    with pytest.raises(ConfigError, match="perceptual_fallback"):
        tt.TaftLossConfig(perceptual_fallback="zero")


def test_missing_vgg_weights_fall_back_or_raise(tmp_path, caplog):
    absent = str(tmp_path / "vgg19-dcbb9e9d.pth")
    g = torch.Generator().manual_seed(4)
    fake, real = signed_images((1, 3, 16, 16), g).float(), signed_images((1, 3, 16, 16), g).float()
    with pytest.raises(CheckpointError, match="perceptual_fallback: l1"):
        tt.TaftLoss(tt.TaftLossConfig(vgg19_weights=absent, perceptual_fallback="error")).perceptual(fake, real)
    with caplog.at_level(logging.WARNING):
        loss = tt.TaftLoss(tt.TaftLossConfig(vgg19_weights=absent))
        assert loss.mode == "l1"
    assert "'l1' fallback" in caplog.text
    pyramid = [(fake.double(), real.double())]
    for _ in range(3):
        pyramid.append(tuple(F.avg_pool2d(x, 2) for x in pyramid[-1]))
    hand = sum(float((a - b).abs().mean()) for a, b in pyramid) / 4
    assert abs(float(loss.perceptual(fake, real)) - hand) <= fp32_bound(1.0, terms=fake.numel())


def tiny_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    source = signed_images((2, 3, 32, 32), g)
    blended = source.clone()
    blended[:, :, 16:28, 8:24] = signed_images((2, 3, 12, 16), g)  # the pasted render
    reference = signed_images((2, 3, 32, 32), g)
    return {"reference_image": reference.float(), "blended_image": blended.float(), "source_image": source.float()}


@pytest.mark.parametrize("perceptual", ["l1 fallback, 4 scales", "random narrow VGG19, 2 scales"])
def test_one_training_step_reduces_the_loss(perceptual, tmp_path):
    """The released step (Adam 1e-4, (0.5, 0.999)) on a fixed pair at 32×32; measured: 3.138 → 3.114 (fallback)."""
    if perceptual.startswith("l1"):
        loss = tt.TaftLoss(tt.TaftLossConfig(vgg19_weights=str(tmp_path / "absent.pth")))
    else:
        loss = tt.TaftLoss(tt.TaftLossConfig(num_scales=2), vgg=narrow_vgg())
    net = TaftGenerator(base_nc=4, max_nc=8, descriptor_nc=8, layers=2)
    seeded_fill_(net, torch.Generator().manual_seed(0))
    ema = tt.make_ema_generator(net)
    optimizer, scheduler = tt.build_optimizer(net)
    batch = tiny_batch()

    def total() -> dict[str, float]:
        with torch.no_grad():
            losses = loss.generator_losses(net(batch["reference_image"], batch["blended_image"]),
                                           batch["source_image"])
        return {k: float(v) for k, v in losses.items()}

    before = total()
    old = {k: p.detach().clone() for k, p in net.named_parameters()}
    step = tt.taft_train_step(net, ema, optimizer, loss, batch, scheduler=scheduler)
    after = total()
    assert set(step) == {"perceptual_final", "l1_loss", "total_loss"}
    assert step["total_loss"] == pytest.approx(before["total_loss"], rel=1e-5)
    assert step["total_loss"] == pytest.approx(step["perceptual_final"] + step["l1_loss"], rel=1e-6)
    assert after["total_loss"] < 0.999 * before["total_loss"], (before, after)
    assert scheduler.last_epoch == 1 and optimizer.param_groups[0]["lr"] == 1e-4
    d = tt.EMA_DECAY
    for k, p in ema.named_parameters():  # one EMA update from the initial copy
        new = net.get_parameter(k).detach().double()
        hand = old[k].double() * d + new * (1 - d)
        assert max_abs_diff(p.numpy(), hand.numpy()) <= fp32_bound(scale_of(hand.numpy()), terms=2)
    unused = [k for k in old if k.startswith("mapping_net.")]
    assert unused and all(torch.equal(old[k], net.get_parameter(k)) for k in unused)  # no gradient, no update
    saved = tt.release_checkpoint(net, ema, optimizer, scheduler, 0, 1)
    assert set(saved) == {"net_G", "net_G_ema", "opt_G", "sch_G", "current_epoch", "current_iteration"}
    assert list(saved["net_G_ema"]) == list(net.state_dict()) and saved["sch_G"]["last_epoch"] == 1
    assert tt.CHECKPOINT_NAME.format(epoch=0, iteration=1) == "epoch_00000_iteration_000000001_checkpoint.pt"


def test_gan_term_is_optional(tmp_path):
    """weight_gan 0 (the default): no discriminator and the released total; > 0: an LSGAN term on the conditional
    PatchGAN and one discriminator step on the detached output."""
    config = tt.TaftLossConfig(vgg19_weights=str(tmp_path / "absent.pth"), weight_gan=0.5)
    loss = tt.TaftLoss(config)
    net = TaftGenerator(base_nc=4, max_nc=8, descriptor_nc=8, layers=2)
    seeded_fill_(net, torch.Generator().manual_seed(0))
    disc = tt.TaftPatchDiscriminator(ndf=4)
    optimizer, _ = tt.build_optimizer(net)
    d_optimizer = tt.build_discriminator_optimizer(disc)
    batch = tiny_batch()
    assert disc(batch["source_image"], batch["blended_image"]).shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="discriminator"):
        tt.taft_train_step(net, tt.make_ema_generator(net), optimizer, loss, batch)
    d_before = [p.detach().clone() for p in disc.parameters()]
    step = tt.taft_train_step(net, tt.make_ema_generator(net), optimizer, loss, batch, discriminator=disc,
                              d_optimizer=d_optimizer)
    assert set(step) == {"perceptual_final", "l1_loss", "gan", "total_loss", "discriminator"}
    assert step["total_loss"] == pytest.approx(step["perceptual_final"] + step["l1_loss"] + step["gan"], rel=1e-6)
    assert all(p.requires_grad for p in disc.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))

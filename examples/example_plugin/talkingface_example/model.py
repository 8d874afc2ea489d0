"""``example_inpainter``: redraws the lower face half from a reference frame and audio energies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from talkingface import TalkingFaceModel, register_model
from talkingface.data import ClipStore
from talkingface.media import VideoWriter, read_audio, read_frames

from .features import BANDS, CONTEXT, FPS, SAMPLE_RATE, band_energies

AUDIO_DIM = (2 * CONTEXT + 1) * BANDS


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 -> ``(..., 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 255.0


def lower_half_mask(images: torch.Tensor) -> torch.Tensor:
    """``(1, 1, H, 1)`` float mask, 1 on the lower half of the image rows."""
    rows = torch.arange(images.shape[-2], device=images.device) >= images.shape[-2] // 2
    return rows.to(images.dtype)[None, None, :, None]


def mask_lower_half(images: torch.Tensor) -> torch.Tensor:
    return images * (1 - lower_half_mask(images))


class ClipFrames(Dataset):
    """Every frame of every clip in a split: masked target, random reference, audio feature."""

    def __init__(self, store: ClipStore, split: str):
        self.clips = []
        for clip in store.split(split):
            frames = read_frames(clip.video_path)
            audio = read_audio(clip.audio_path, SAMPLE_RATE)
            self.clips.append((frames, band_energies(audio, len(frames))))
        self.index = [(c, t) for c, (frames, _) in enumerate(self.clips) for t in range(len(frames))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        c, t = self.index[i]
        frames, features = self.clips[c]
        reference = np.random.randint(len(frames))  # seeded per sample by the trainer
        return {"target": to_tensor(frames[t]), "reference": to_tensor(frames[reference]),
                "audio": torch.from_numpy(features[t])}


def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: the per-channel GroupNorm right after it would cancel it (its gradient is zero).
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.SiLU())


@register_model("example_inpainter", aliases=("example",))
class ExampleInpainter(TalkingFaceModel):
    """A 3-level U-Net with the audio feature injected at the bottleneck."""

    default_config = {"example_inpainter": {"channels": 32, "lr": 2e-3, "generate_batch": 16},
                      "train": {"epochs": 20, "batch_size": 8}}  # ~2.5 min on 2 CPU cores
    default_dataset = "example_shapes"

    def __init__(self, config=None):
        super().__init__(config)
        ch = int(self.config["example_inpainter"]["channels"])
        self.enc1 = block(6, ch)
        self.enc2 = block(ch, ch * 2, 2)
        self.enc3 = block(ch * 2, ch * 4, 2)
        self.audio = nn.Sequential(nn.Linear(AUDIO_DIM, ch * 4), nn.SiLU(), nn.Linear(ch * 4, ch * 4))
        self.dec3 = block(ch * 4, ch * 2)
        self.dec2 = block(ch * 4, ch)
        self.dec1 = block(ch * 2, ch)
        self.out = nn.Conv2d(ch, 3, 1)

    def forward(self, masked: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """``(B,3,H,W)``, ``(B,3,H,W)`` in [0,1] and ``(B, AUDIO_DIM)`` -> ``(B,3,H,W)`` in [0,1]."""
        e1 = self.enc1(torch.cat([masked, reference], 1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2) + self.audio(audio)[:, :, None, None]
        d3 = F.interpolate(self.dec3(e3), size=e2.shape[-2:], mode="nearest")
        d2 = F.interpolate(self.dec2(torch.cat([d3, e2], 1)), size=e1.shape[-2:], mode="nearest")
        d1 = self.dec1(torch.cat([d2, e1], 1))
        mask = lower_half_mask(masked)  # only the masked half is redrawn; the rest is kept
        return masked * (1 - mask) + torch.sigmoid(self.out(d1)) * mask

    def configure_optimizers(self) -> dict:
        opt = torch.optim.Adam(self.parameters(), lr=float(self.config["example_inpainter"]["lr"]))
        return {"optimizers": {"net": opt}, "schedulers": {}}

    def build_dataset(self, store: ClipStore, split: str) -> Dataset:
        return ClipFrames(store, split)

    def _loss(self, batch: dict) -> torch.Tensor:
        prediction = self(mask_lower_half(batch["target"]), batch["reference"], batch["audio"])
        return F.l1_loss(prediction, batch["target"])

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        with self.autocast():
            loss = self._loss(batch)
        self.backward(loss)
        self.optimizer_step(self.optimizers["net"])
        return {"loss": loss.item()}

    def validation_step(self, batch: dict) -> dict[str, float]:
        return {"loss": self._loss(batch).item()}

    def generate(self, source_video, audio, output, **options) -> Path:
        frames = read_frames(source_video)
        wav = read_audio(audio, SAMPLE_RATE)
        count = min(len(frames), int(len(wav) * FPS / SAMPLE_RATE))
        features = torch.from_numpy(band_energies(wav, count))
        reference = to_tensor(frames[0])
        batch = int(self.config["example_inpainter"]["generate_batch"])
        with VideoWriter(output, FPS, audio=wav[: count * SAMPLE_RATE // FPS], sample_rate=SAMPLE_RATE) as writer:
            for start in range(0, count, batch):
                target = to_tensor(frames[start:start + batch]).to(self.device)
                audio_feat = features[start:start + batch].to(self.device)
                out = self(mask_lower_half(target), reference.to(self.device).expand_as(target), audio_feat)
                for image in (out.clamp(0, 1) * 255).round().byte().movedim(1, -1).cpu().numpy():
                    writer.write(image)
        return Path(output)

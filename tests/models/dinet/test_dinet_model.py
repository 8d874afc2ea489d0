"""The registered ``dinet`` model: official releases, one step of every stage, the recipe, dubbing, fallbacks."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from talkingface.errors import CheckpointError, DataError
from talkingface.media import VideoWriter, probe_video, read_frames, write_wav
from talkingface.models.common import PerceptualLoss, lr_factor, pixel_l1_loss
from talkingface.models.dinet.networks import DINetNetworks
from talkingface.pipeline import train
from numerics import assert_fp32_close, fp32_bound, max_abs_diff
from test_dinet_data import make_store
from test_preprocess import face_image, face_video, tone

STAGES = {name: {"mouth": 64, "augment_num": 2, "batch_size": 2, "epochs": 1, "non_decay": 1, "decay": 1}
            for name in ("syncnet", "frame64", "clip")}  # short stages


def config(tmp: Path | None = None, **dinet) -> talkingface.Config:
    base = {"mouth_region_size": 64, "audio_feature": "mfcc", "stages": STAGES, "recipe": ["syncnet", "frame64", "clip"],
            "vgg19_weights": str((tmp or Path("/nonexistent")) / "no-vgg19.pth")}
    extra = {"saved_dir": str(tmp / "saved")} if tmp else {}
    return talkingface.load_config("dinet", config={"dinet": {**base, **dinet}, "progress": False,
                                                    "train": {"batch_size": 2, "log_every_steps": 1}, **extra})


def perturbed(nets: DINetNetworks, seed: int) -> DINetNetworks:
    """Random weights and non-trivial BatchNorm statistics (so a wrong mode or a skipped buffer shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in nets.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=gen)
                tensor.copy_(0.5 + noise if "running_var" in name else tensor + 0.05 * (noise - 0.5))
    return nets.eval()


def official_files(tmp: Path, nets: DINetNetworks) -> tuple[Path, Path, Path]:
    """The release layouts: clip-training file (module. prefix, 3 nets), frame-stage file (2 nets), syncnet file."""
    def prefixed(module):
        return {f"module.{k}": v.clone() for k, v in module.state_dict().items()}

    clip = {"epoch": 160, "state_dict": {"net_g": prefixed(nets.generator), "net_dI": prefixed(nets.frame_discriminator),
                                         "net_dV": prefixed(nets.clip_discriminator)}, "optimizer": {"net_g": {}}}
    frame = {"epoch": 200, "state_dict": {"net_g": prefixed(nets.generator), "net_dI": prefixed(nets.frame_discriminator)}}
    sync = {"state_dict": {"net": {k: v.clone() for k, v in nets.syncnet.state_dict().items()}}}
    paths = tmp / "clip_training_DINet_64mouth.pth", tmp / "frame_stage.pth", tmp / "syncnet_64mouth.pth"
    for path, obj in zip(paths, (clip, frame, sync)):
        torch.save(obj, path)
    return paths


# ---- contract and releases -------------------------------------------------------------------------
def test_build_model_contract_shapes():
    m = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 256}}).eval()
    assert m.audio_channels == 29 and m.stage == "frame256" and m.recipe()[0] == "syncnet"
    small = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64}}).eval()
    with torch.no_grad():
        out = small.generator(torch.rand(2, 3, 104, 80), torch.rand(2, 15, 104, 80), torch.rand(2, 29, 5))
        score = small.syncnet(torch.rand(2, 15, 64, 64), torch.rand(2, 29, 9))
    assert out.shape == (2, 3, 104, 80) and 0 <= out.min() and out.max() <= 1
    assert score.shape == (2, 1, 2, 2)
    assert talkingface.build_model("dinet", {"dinet": {"audio_feature": "mfcc"}}).audio_channels == 52
    assert talkingface.build_model("dinet", {"dinet": {"audio_feature": "mel"}}).audio_channels == 80


@pytest.mark.numerics
def test_official_releases_load_strictly_and_reproduce_the_networks(tmp_path):
    reference = perturbed(DINetNetworks(64, 29), seed=1)
    clip_file, frame_file, sync_file = official_files(tmp_path, reference)
    m = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64}}).eval()
    untouched = {k: v.clone() for k, v in m.networks.syncnet.state_dict().items()}
    m.load_checkpoint(clip_file)
    assert all(torch.equal(v, m.networks.syncnet.state_dict()[k]) for k, v in untouched.items())  # not in the file
    m.load_checkpoint(sync_file)
    gen = torch.Generator().manual_seed(0)
    source, refs = torch.rand(2, 3, 104, 80, generator=gen), torch.rand(2, 15, 104, 80, generator=gen)
    audio, mouths, full = torch.randn(2, 29, 5, generator=gen), torch.rand(2, 15, 64, 64, generator=gen), \
        torch.randn(2, 29, 9, generator=gen)
    with torch.no_grad():
        assert torch.equal(m.generator(source, refs, audio), reference.generator(source, refs, audio))
        assert torch.equal(m.syncnet(mouths, full), reference.syncnet(mouths, full))
        assert torch.equal(m.clip_discriminator(mouths[:, :15, :, :])[1], reference.clip_discriminator(mouths)[1])
    # a frame-stage file holds net_g and net_dI only: the clip discriminator keeps its weights
    fresh = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64}})
    before = {k: v.clone() for k, v in fresh.clip_discriminator.state_dict().items()}
    fresh.load_checkpoint(frame_file)
    assert all(torch.equal(v, fresh.clip_discriminator.state_dict()[k]) for k, v in before.items())
    assert torch.equal(fresh.generator.state_dict()["out_conv.4.weight"], reference.generator.out_conv[4].weight)
    # our own format round-trips every network
    m.save_weights(tmp_path / "ours.pth")
    again = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64}}).load_checkpoint(tmp_path / "ours.pth")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in m.state_dict().items())
    assert m.convert_official_checkpoint({"weights": 1}, "other.pth") is None


def test_wrong_checkpoints_are_named(tmp_path):
    reference = DINetNetworks(64, 29)
    clip_file, _, _ = official_files(tmp_path, reference)
    mfcc_model = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64, "audio_feature": "mfcc"}})
    with pytest.raises(CheckpointError,
                       match=r"clip_training_DINet_64mouth.pth \[networks.generator\].*audio_encoder.0.conv"):
        mfcc_model.load_checkpoint(clip_file)  # 29-wide DeepSpeech encoder into a 52-wide MFCC model
    torch.save({"state_dict": {"something": {}}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth"):
        mfcc_model.load_checkpoint(tmp_path / "other.pth")


# ---- one step of each stage ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("dinet_model_store"))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed_networks(model, before) -> set[str]:
    return {k.split(".")[1] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def one_step(model, store, stage: str, batch_size: int = 2) -> dict[str, float]:
    model.enter_stage(stage, None)
    data = model.build_dataset(store, "train")
    batch = torch.utils.data.default_collate([data[i] for i in range(batch_size)])
    model.optimizers = model.configure_optimizers()["optimizers"]
    model.train()
    return model.training_step(batch, 0)


@pytest.mark.parametrize("stage, trained", [
    ("syncnet", {"syncnet"}),
    ("frame64", {"generator", "frame_discriminator"}),
    ("clip", {"generator", "frame_discriminator", "clip_discriminator"}),
])
def test_one_step_trains_exactly_the_networks_of_the_stage(store, stage, trained, caplog):
    torch.manual_seed(0)
    model = talkingface.build_model("dinet", config())
    before = snapshot(model)
    with caplog.at_level(logging.WARNING):
        logs = one_step(model, store, stage, batch_size=1 if stage == "clip" else 2)
    assert logs and all(np.isfinite(v) for v in logs.values()), logs
    assert changed_networks(model, before) == trained
    if stage == "clip":
        assert logs["sync"] > 0 and not model.syncnet.training  # frozen SyncNet kept in eval mode
        # the generator's loss is perception + GAN_I + GAN_V + 0.1 MSE(SyncNet, 1)
        assert np.isclose(logs["loss"], logs["perception"] + logs["gan_i"] + logs["gan_v"] + logs["sync"], rtol=1e-5)
    if stage != "syncnet":
        assert "no-vgg19.pth" in caplog.text and "fallback" in caplog.text


def test_the_recipe_trains_each_stage_and_hands_the_weights_on(store, tmp_path):
    cfg = config(tmp_path, recipe=["syncnet", "clip"]).updated({"train": {"max_steps": 1}})
    model = talkingface.build_model("dinet", cfg)
    results = train(model, store, cfg, tmp_path / "run")
    assert list(results) == ["syncnet", "clip"] and all(r["step"] == 1 for r in results.values())
    stage_dirs = sorted(p.name for p in (tmp_path / "run" / "stages").iterdir())
    assert stage_dirs == ["0-syncnet", "1-clip"]
    trained_sync = torch.load(tmp_path / "run" / "stages" / "0-syncnet" / "checkpoints" / "last.pth",
                              weights_only=True)["state_dict"]
    final = model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in trained_sync.items() if k.startswith("networks.syncnet."))
    assert model.stage == "clip" and model.inference_mouth == 64
    assert model.enter_stage("frame64", None) == {"train": {"epochs": 1, "batch_size": 2}}


def test_lr_schedule_and_default_stage_settings():
    assert [lr_factor(e, 200, 200) for e in (0, 200, 201, 400, 401, 500)] == [1, 1, 1 - 1 / 201, 1 - 200 / 201, 0, 0]
    stages = talkingface.build_model("dinet").options["stages"]
    assert {k: (v["mouth"], v["batch_size"], v["augment_num"], v["epochs"]) for k, v in stages.items()
            if k != "syncnet"} == {"frame64": (64, 24, 32, 270), "frame128": (128, 80, 100, 200),
                                   "frame256": (256, 12, 20, 200), "clip": (256, 3, 3, 160)}


def test_perceptual_loss_falls_back_or_stops_when_vgg19_is_absent(tmp_path, caplog):
    options = dict(talkingface.build_model("dinet").options.to_dict(), vgg19_weights=str(tmp_path / "vgg.pth"))
    fake, real = torch.rand(1, 3, 52, 40), torch.rand(1, 3, 52, 40)
    with caplog.at_level(logging.WARNING):
        loss = PerceptualLoss(options, "dinet")(fake, real)
    assert str(tmp_path / "vgg.pth") in caplog.text
    assert torch.allclose(loss, 10 * pixel_l1_loss(fake, real)) and loss > 0
    with pytest.raises(CheckpointError, match="vgg.pth"):
        PerceptualLoss({**options, "perceptual_fallback": "error"}, "dinet")(fake, real)


# ---- dubbing ---------------------------------------------------------------------------------------
def dubber(**dinet):
    return talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 32, "audio_feature": "mfcc",
                                                       "infer_batch": 4, **dinet}, "progress": False}).eval()


def test_generate_extends_the_video_to_the_audio_with_sound(tmp_path):
    src = face_video(tmp_path / "src.mp4", seconds=0.6, audio_seconds=1.2)
    audio = face_video(tmp_path / "speech.mp4", seconds=1.2)
    out = dubber().generate(src, audio, tmp_path / "out.mp4")
    info, source = probe_video(out), probe_video(src)
    assert info.has_audio and info.fps == 25 and (info.width, info.height) == (source.width, source.height)
    assert abs(info.frame_count - 30) <= 1  # 1.2 s of audio: the 15-frame video ping-pongs
    frames, original = read_frames(out), read_frames(src)
    assert np.abs(frames[:15].astype(float) - original.astype(float)).mean(axis=(1, 2, 3)).max() > 0.5  # dubbed
    # shorter audio trims the video
    write_wav(tmp_path / "short.wav", tone(0.6))
    short = dubber(paste="official").generate(audio, tmp_path / "short.wav", tmp_path / "short.mp4")
    assert abs(probe_video(short).frame_count - 15) <= 1


def test_thirty_fps_stays_thirty_unless_25_is_asked(tmp_path):
    src = face_video(tmp_path / "src30.mp4", seconds=0.6, fps=30)
    out = dubber().generate(src, src, tmp_path / "out30.mp4")
    assert probe_video(out).fps == 30 and abs(probe_video(out).frame_count - 18) <= 1
    out25 = dubber().generate(src, src, tmp_path / "out25.mp4", fps=25)
    assert probe_video(out25).fps == 25 and abs(probe_video(out25).frame_count - 15) <= 1


def test_frames_without_a_face_pass_through_and_no_face_at_all_is_an_error(tmp_path):
    src = face_video(tmp_path / "gap.mp4", seconds=1.0, blank=(0.4, 0.6))  # frames 10..14 blank
    out = read_frames(dubber().generate(src, src, tmp_path / "gap_out.mp4"))
    original = read_frames(src)
    diff = np.abs(out[:25].astype(float) - original[:25].astype(float)).mean(axis=(1, 2, 3))
    assert diff[10:15].max() < 1.0 and diff[:8].min() > 0.5, diff
    with VideoWriter(tmp_path / "noface.mp4", 25, audio=tone(0.4)) as writer:
        for _ in range(10):
            writer.write(np.full((128, 128, 3), 90, np.uint8))
    with pytest.raises(DataError, match="noface.mp4"):
        dubber().generate(tmp_path / "noface.mp4", tmp_path / "noface.mp4", tmp_path / "x.mp4")
    with pytest.raises(DataError, match="face index 3"):
        dubber().generate(src, src, tmp_path / "y.mp4", face=3)


def test_face_index_picks_the_face_left_to_right(tmp_path):
    face = face_image()
    size = face.shape[1]
    scene = np.zeros((face.shape[0], 2 * size + 32, 3), np.uint8)
    scene[:, :size], scene[:, size + 32:] = face, face
    with VideoWriter(tmp_path / "two.mp4", 25, audio=tone(0.4)) as writer:
        for _ in range(10):
            writer.write(scene)
    outputs = {}
    for face_index in (0, 1):
        outputs[face_index] = read_frames(dubber().generate(tmp_path / "two.mp4", tmp_path / "two.mp4",
                                                            tmp_path / f"f{face_index}.mp4", face=face_index))
    original = read_frames(tmp_path / "two.mp4").astype(float)
    outputs = {k: v[:len(original)] for k, v in outputs.items()}
    half = scene.shape[1] // 2
    left = lambda v: np.abs(v[:, :, :half].astype(float) - original[:, :, :half]).mean()  # noqa: E731
    right = lambda v: np.abs(v[:, :, half:].astype(float) - original[:, :, half:]).mean()  # noqa: E731
    assert left(outputs[0]) > 3 * right(outputs[0]) and right(outputs[1]) > 3 * left(outputs[1])


def test_flat_model_options_as_in_the_contract():
    flat = talkingface.build_model("dinet", {"mouth_region_size": 64, "audio_feature": "mfcc"})
    assert flat.networks.mouth_region_size == 64 and flat.networks.audio_channel == 52
    with pytest.raises(talkingface.ConfigError):
        talkingface.build_model("dinet", {"mouth_region_size": 64, "not_an_option": 1})


def spread_weights_(module: torch.nn.Module, seed: int = 0) -> None:
    """He-normal convolution/linear weights, so that outputs spread over [0, 1] (the default init leaves
    DINet's sigmoid output within 1e-3 of 0.5, where no comparison could fail)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = layer.weight[0].numel()
                draw = torch.randn(layer.weight.shape, generator=g, dtype=torch.float64)
                layer.weight.copy_(draw * (2 / fan_in) ** 0.5)


@pytest.mark.numerics
@pytest.mark.parametrize("channels_last", [True, False])
def test_dubbing_memory_format_is_an_option_and_is_undone(tmp_path, channels_last, monkeypatch):
    src = face_video(tmp_path / "src.mp4", seconds=0.4)
    model = dubber(channels_last=channels_last).train()
    generator = model.networks.generator
    spread_weights_(generator)
    seen, faces = [], []
    hook = generator.register_forward_pre_hook(lambda module, inputs: seen.append(
        (inputs[0].is_contiguous(memory_format=torch.channels_last), module.training,
         all(p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters() if p.dim() == 4))))
    keep = generator.register_forward_hook(lambda module, inputs, output: faces.append(output.detach().clone()))
    out = read_frames(model.generate(src, src, tmp_path / "out.mp4"))
    hook.remove()
    keep.remove()
    assert seen and all(entry == (channels_last, False, channels_last) for entry in seen), seen
    assert generator.training and all(p.is_contiguous() for p in generator.parameters())
    if channels_last:  # the same generated faces as the default memory format, to float32 rounding
        plain = dubber(channels_last=False)
        plain.networks.load_state_dict(model.networks.state_dict())
        plain_faces = []
        plain.networks.generator.register_forward_hook(lambda m, i, output: plain_faces.append(output.detach()))
        plain.generate(src, src, tmp_path / "plain.mp4")
        ours, theirs = torch.cat(faces).numpy(), torch.cat(plain_faces).numpy()
        layers = [m for m in generator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d,
                                                                    torch.nn.Linear))]
        # the layout changes only the convolutions' summation order (outputs in [0, 1], scale 1)
        bound = fp32_bound(1.0, max(m.weight[0].numel() for m in layers), depth=len(layers))
        assert_fp32_close(ours, theirs, bound, "channels-last faces")  # measured 2.4e-5 against 6.1e-3
        # Break check on the code: the same channels-last dub with the loop's audio indexing off by one (each
        # frame gets the next frame's audio windows) misses the bound by far more: measured 1.0 (165x the bound)
        # on its first batch (the dub is stopped there to keep the test short).
        import talkingface.dubbing.loop as loop

        planned = loop.plan_inference
        monkeypatch.setattr(loop, "plan_inference", lambda *args: (lambda plan: dataclasses.replace(
            plan, audio_windows=np.minimum(plan.audio_windows + 1, plan.audio_windows.max())))(planned(*args)))
        broken = []

        class FirstBatch(Exception):
            pass

        def first_batch(module, inputs, output):
            broken.append(output.detach().clone())
            raise FirstBatch

        keep = generator.register_forward_hook(first_batch)
        with pytest.raises(FirstBatch):
            model.generate(src, src, tmp_path / "broken.mp4")
        keep.remove()
        broken = broken[0].numpy()
        assert len(broken) == 4 and max_abs_diff(broken, theirs[:4]) > 100 * bound
        original = read_frames(src)
        assert np.abs(out[:len(original)].astype(float) - original.astype(float)).mean() > 0.5  # it dubbed


@pytest.mark.numerics
def test_overlapped_dubbing_equals_the_plain_loop_and_fails_cleanly(tmp_path, monkeypatch):
    import threading

    import talkingface.models.dinet.dubbing as inference

    src = face_video(tmp_path / "src.mp4", seconds=0.6)
    overlapped = dubber(overlap_io=True)
    plain = dubber(overlap_io=False)
    plain.networks.load_state_dict(overlapped.networks.state_dict())
    a = read_frames(overlapped.generate(src, src, tmp_path / "a.mp4"))
    b = read_frames(plain.generate(src, src, tmp_path / "b.mp4"))
    # Bit-identical by construction: both make the same float computations on the same batches in the
    # same order (a thread changes where decode, crop and paste run, not what they compute), and the
    # encoder is deterministic (talkingface.media.video.x264_options).
    assert a.shape == b.shape and np.array_equal(a, b)

    calls, original = [], inference.paste_dinet_feathered

    def failing_paste(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("paste failed on frame 5")
        return original(*args)

    monkeypatch.setattr(inference, "paste_dinet_feathered", failing_paste)
    with pytest.raises(OSError, match="frame 5"):
        overlapped.generate(src, src, tmp_path / "broken.mp4")
    assert not (tmp_path / "broken.mp4").exists() and list(tmp_path.glob("broken*")) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("dinet-")]

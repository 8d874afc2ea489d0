"""GSmoothFace end to end at tiny sizes: a dub of a video in no store (its coefficients from the face3d step's code)
with a faceless stretch at 30 fps, pasted into the full frame; each output frame's expression is A2EP's row for the
audio it hears; long audio through overlapping chunks; the speaker style; one step of each stage (TAFT's moving
average included)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from talkingface.media import iter_frames, probe_video, write_wav
from talkingface.models.gsmoothface import chunks
from talkingface.models.gsmoothface.dubbing import GSmoothFaceDubbing
from talkingface.models.gsmoothface.taft_training import EMA_DECAY

from test_preprocess import face_video, tone


@pytest.fixture(autouse=True)
def restore_torch_rng():
    """The tests seed torch's global generator; each one leaves it as it found it."""
    with torch.random.fork_rng():
        yield


TINY = {"gsmoothface": {"a2ep": {"audio_encoder": "feature", "audio_feature": "mfcc", "feature_dim": 16},
                        "taft": {"image_size": 32, "base_nc": 4, "max_nc": 8, "descriptor_nc": 8, "layers": 2,
                                 "num_res_blocks": 1}},
        "face3d": {"method": "fit", "fit": {"key_frames": 2, "key_landmark_steps": 30, "key_steps": 2,
                                            "frame_landmark_steps": 10, "frame_steps": 1}},
        "progress": False}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> talkingface.TalkingFaceModel:
    from talkingface.face3d import write_standin_bfm

    folder = tmp_path_factory.mktemp("bfm")
    write_standin_bfm(folder, vertices=300)
    config = {**TINY, "face3d": {**TINY["face3d"], "bfm_folder": str(folder)}}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = talkingface.build_model("gsmoothface", config).eval()
        with torch.no_grad():  # a non-zero output layer: A2EP's expressions depend on the audio
            net.a2ep.vertice_map_r.weight.normal_(0, 0.5)
    return net


def test_dub_of_a_new_video_keeps_faceless_frames_rate_and_the_rest_of_the_frame(model, tmp_path):
    video = face_video(tmp_path / "target.mp4", seconds=1.2, fps=30, blank=(0.5, 0.8))
    audio = write_wav(tmp_path / "speech.wav", tone(1.0), 16000)
    with torch.no_grad():
        out = model.generate(video, audio, tmp_path / "out.mp4")
    info = probe_video(out)
    assert info.has_audio and abs(info.fps - 30) < 1e-6 and abs(info.frame_count - 30) <= 1
    dubbed = np.stack(list(iter_frames(out)))
    original = np.stack(list(iter_frames(video)))[:len(dubbed)]
    blank = slice(16, 23)  # 0.53 .. 0.77 s: no face
    assert np.abs(dubbed[blank].astype(int) - original[blank]).max() <= 6  # passed through (codec noise only)
    faces = [i for i in range(len(dubbed)) if not 15 <= i <= 24]
    change = np.abs(dubbed[faces].astype(int) - original[faces]).max(-1)
    assert (change > 20).any(axis=(1, 2)).all()  # every frame with a face was dubbed ...
    changed = change > 20
    height, width = info.height, info.width
    face_region = changed[:, int(0.25 * height):int(0.9 * height), int(0.15 * width):int(0.85 * width)].sum()
    assert face_region >= 0.9 * changed.sum()  # ... around the face (the box's paste weight), not elsewhere
    assert changed.mean() < 0.25


def test_each_output_frame_gets_the_expression_of_the_audio_it_hears(model, tmp_path):
    """The crop of output m renders the target's coefficients of its source frame with A2EP's row
    ``plan.audio_index[m]``; with another row the blend differs (not vacuous)."""
    from talkingface.dubbing import plan_inference, prepare_source
    from talkingface.face3d import crop_portrait
    from talkingface.models.gsmoothface.taft_data import to_signed

    hooks = GSmoothFaceDubbing(model)
    one_hot = model.one_hot(1)
    rows = np.random.default_rng(0).normal(size=(30, model.feature_width("mfcc"))).astype(np.float32)
    hooks.expressions = model.predict_expressions(np.zeros(30 * 640), rows, 30, one_hot)
    assert hooks.expressions.shape == (30, 64) and np.abs(np.diff(hooks.expressions, axis=0)).max() > 1e-3
    video = face_video(tmp_path / "target.mp4", seconds=0.8, fps=25)

    prepared = prepare_source(hooks, video, None, None, False, probe_video(video))
    plan = plan_inference(len(prepared.landmarks), 30, prepared.fps, 0)
    track = prepared.track(plan)
    hooks.prepare(track, np.random.default_rng(0))
    frames = list(iter_frames(video))
    m = 7
    face, (box, alpha) = hooks.crop(frames[plan.source_index[m]], track, m)
    coeffs = hooks.coeffs[plan.source_index[m]].copy()
    exp = hooks.blender.model.coeff_slices["exp"]

    source = to_signed(crop_portrait(frames[plan.source_index[m]], box, model.image_size))[None]
    for row, same in ((plan.audio_index[m], True), (plan.audio_index[m] + 5, False)):
        coeffs[exp] = hooks.expressions[row]
        expected = hooks.blender.blend(source, torch.from_numpy(coeffs)[None], hooks.params[plan.source_index[m]][None],
                                       box).blended[0]
        assert torch.equal((expected + 1) / 2, face[3:]) is same
    assert alpha.shape == (model.image_size,) * 2 and alpha.max() > 0.9 and alpha.min() == 0


def test_long_audio_is_predicted_in_overlapping_chunks(model, monkeypatch):
    """Audio longer than ``max_seq_len`` frames: A2EP predicts each chunk on its own and the overlaps are
    cross-faded; with a 12-frame limit and 4 frames of overlap, 30 frames take 4 chunks."""
    rows = np.random.default_rng(1).normal(size=(30, model.feature_width("mfcc"))).astype(np.float32)
    one_hot = model.one_hot(0)
    monkeypatch.setitem(model.options._data["a2ep"], "max_seq_len", 12)
    monkeypatch.setitem(model.options._data, "chunk_overlap", 4)
    joined = model.predict_expressions(np.zeros(30 * 640), rows, 30, one_hot)
    spans = chunks.chunk_spans(30, 12, 4)
    assert spans == [(0, 12), (8, 20), (16, 28), (24, 30)]
    with torch.no_grad():
        pieces = [model.a2ep.predict({"raw_audio": torch.from_numpy(rows[s:e])[None], "one_hot": one_hot})[0].numpy()
                  for s, e in spans]
    np.testing.assert_allclose(joined, chunks.join_chunks(pieces, spans, 30), rtol=0, atol=1e-6)
    assert np.abs(joined[8:12] - pieces[0][8:12]).max() > 1e-4  # the overlap is a blend, not the first chunk


def test_speaker_style_by_name_index_or_the_targets_own(model):
    from talkingface.models.gsmoothface.data import SpeakerTable

    model._store_speakers(SpeakerTable(("demo_00", "demo_03"), {"demo_00": "demo_00", "demo_01": "demo_00",
                                                                  "demo_03": "demo_03"}, 8, "source"))
    assert model.one_hot("demo_03").argmax() == 1 and model.one_hot(0).argmax() == 0
    assert model.one_hot(None, Path("/store/clips/demo_01/video.mp4")).argmax() == 0  # demo_01 is demo_00's
    assert model.one_hot(None, Path("/store/clips/demo_03/video.mp4")).argmax() == 1
    assert model.one_hot(None, Path("/elsewhere/video.mp4")).argmax() == 0
    with pytest.raises(talkingface.errors.ConfigError, match="demo_00, demo_03"):
        model.one_hot("someone")
    model.speaker_json.zero_()


def test_one_step_of_each_stage_trains_its_networks_and_taft_moves_its_average(model):
    net = talkingface.build_model("gsmoothface", {**TINY, "face3d": model.config["face3d"].to_dict()})
    frames, width, vertices = 8, net.feature_width("mfcc"), net.face_model().num_vertices
    exp_base = torch.randn(1, 3 * vertices, 64) * 0.01
    template = torch.randn(1, frames, 3 * vertices)
    batch = {"raw_audio": torch.randn(1, frames, width), "template": template,
             "face_vertex": template + torch.einsum("ijk,iak->iaj", exp_base, torch.randn(1, frames, 64)),
             "one_hot": torch.eye(8)[:1], "exp_base": exp_base, "exp": torch.randn(1, frames, 64)}
    for stage in ("a2ep", "taft"):
        net.enter_stage(stage, None)
        net.train()
        net.optimizers = net.configure_optimizers()["optimizers"]
        before = {k: v.clone() for k, v in net.state_dict().items()}
        if stage == "a2ep":
            logs = net.training_step(batch, 0)
        else:
            images = {k: torch.rand(2, 3, 32, 32) * 2 - 1 for k in ("reference", "blended", "target")}
            logs = net.training_step(images, 0)
        assert np.isfinite(logs["loss"])
        changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
        assert changed == ({"a2ep"} if stage == "a2ep" else {"taft", "taft_train", "taft_iterations"}), changed
    # the moving average: ema' = d ema + (1 - d) G' (G' the stepped generator), for every parameter
    state = net.state_dict()
    for key in [k for k in state if k.startswith("taft_train.")][:6]:
        ema_key = "taft." + key[len("taft_train."):]
        expected = EMA_DECAY * before[ema_key] + (1 - EMA_DECAY) * state[key]
        assert torch.allclose(state[ema_key], expected, rtol=0, atol=1e-7), key
    assert int(net.taft_iterations) == 1


@pytest.mark.parametrize("teacher_forcing,supervise_exp", [(True, False), (True, True), (False, True)])
def test_a2ep_loss_under_each_official_option(model, teacher_forcing, supervise_exp):
    """``teacher_forcing`` feeds the 64 coefficients back (the official training code would hand the decoder the
    vertices and fail); ``supervise_exp`` is the coefficients' MSE; both give a finite loss with gradients reaching
    the decoder, and the vertex loss is the official one of the vertices made from the output."""
    net = talkingface.build_model("gsmoothface", {**TINY, "face3d": model.config["face3d"].to_dict(),
                                                  "gsmoothface": {**TINY["gsmoothface"], "a2ep": {
                                                      **TINY["gsmoothface"]["a2ep"], "teacher_forcing": teacher_forcing,
                                                      "supervise_exp": supervise_exp}}}).eval()  # no dropout
    frames, width, vertices = 8, net.feature_width("mfcc"), 40
    exp_base = torch.randn(1, 3 * vertices, 64) * 0.01
    template = torch.randn(1, frames, 3 * vertices)
    exp = torch.randn(1, frames, 64)
    batch = {"raw_audio": torch.randn(1, frames, width), "template": template,
             "face_vertex": template + torch.einsum("ijk,iak->iaj", exp_base, exp), "one_hot": torch.eye(8)[:1],
             "exp_base": exp_base, "exp": exp}
    with torch.no_grad():
        net.a2ep.vertice_map_r.weight.normal_(0, 0.1)
    loss = net.a2ep_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and net.a2ep.transformer_decoder.layers[0].linear1.weight.grad.abs().sum() > 0
    if not supervise_exp:  # predicted 0 + bias: the loss is the official mean squared vertex distance
        with torch.no_grad():
            forced = {**batch, "template": torch.zeros(1, 1, 64), "face_vertex": exp}
            out = net.a2ep(forced, teacher_forcing=True, return_loss=False, return_exp=True)
            made = template + torch.einsum("ijk,iak->iaj", exp_base, out)
            expected = torch.nn.functional.mse_loss(made, batch["face_vertex"])
        assert torch.allclose(loss, expected, rtol=1e-5)


def test_wav2vec2_a2ep_reads_the_waveform_and_the_loop_computes_no_feature(model):
    """With wav2vec 2.0 the loop hands the hooks the whole waveform and no per-frame vectors (``audio_feature: ""``);
    the expressions are A2EP's ``predict`` on the chunk's waveform normalised as Wav2Vec2Processor does, padded by
    its last row to the audio's 25 fps frame count (the official ``test_step``)."""
    from talkingface.dubbing import audio_vectors
    from talkingface.models.gsmoothface.data import normalise_waveform
    from talkingface.models.gsmoothface.dubbing import dubbing_settings

    small = {"hidden_size": 768, "num_hidden_layers": 1, "num_attention_heads": 12, "intermediate_size": 32,
             "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 16}
    torch.manual_seed(2)
    net = talkingface.build_model("gsmoothface", {**TINY, "face3d": model.config["face3d"].to_dict(),
                                                  "gsmoothface": {**TINY["gsmoothface"], "a2ep": {
                                                      "audio_encoder": "wav2vec2", "wav2vec2": small,
                                                      "feature_dim": 16}}}).eval()
    with torch.no_grad():
        net.a2ep.vertice_map_r.weight.normal_(0, 0.5)
    settings = dubbing_settings(net)
    wav = tone(1.0).astype(np.float64)
    vectors = audio_vectors(settings, net.config, wav, Path("speech.wav"))
    assert settings.audio_feature == "" and vectors.shape == (25, 0)
    one_hot = net.one_hot(2)
    joined = net.predict_expressions(wav, None, 25, one_hot)
    with torch.no_grad():
        direct = net.a2ep.predict({"raw_audio": torch.from_numpy(normalise_waveform(wav[:16000]))[None],
                                   "one_hot": one_hot})[0].numpy()
    assert len(direct) == 24  # round(49 CNN features / 50 * 25) = 24: one row short of the audio's 25 frames
    np.testing.assert_allclose(joined[:24], direct, rtol=0, atol=1e-6)
    assert np.array_equal(joined[24], joined[23])  # padded with the last row, as the official test_step

"""DeepSpeech v0.1.0 port: GraphDef reader, converter, gate mapping, input pipeline, feature, CLI.

The reference values in fixtures/deepspeech/ were computed by TensorFlow itself (make_fixture.py) on
a tiny graph with v0.1.0's node names and structure; these tests need no TensorFlow.
"""
from __future__ import annotations

import logging
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import python_speech_features
import torch
from safetensors.torch import load_file, save_file

from talkingface.audio.deepspeech import (DeepSpeechLogits, DeepSpeechNet, DeepSpeechSizes, GraphDefReader,
                                          build_network, convert_graph, deepspeech_logits, int16_samples,
                                          load_weights, mfcc_windows, read_graph, read_metadata)
from talkingface.audio.deepspeech.convert import lstm_from_tf
from talkingface.cli import main
from talkingface.errors import CheckpointError, ConfigError
from talkingface.registry import AUDIO_FEATURES
from talkingface.weights import sha256_of

from numerics import assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "deepspeech"
GRAPH = FIXTURES / "tiny_graph.pb"
V010_CONSTS = ["b1", "h1", "b2", "h2", "b3", "h3", "bidirectional_rnn/fw/basic_lstm_cell/kernel",
               "bidirectional_rnn/fw/basic_lstm_cell/bias", "bidirectional_rnn/bw/basic_lstm_cell/kernel",
               "bidirectional_rnn/bw/basic_lstm_cell/bias", "b5", "h5", "b6", "h6"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def network() -> DeepSpeechNet:
    return build_network(GRAPH)


@pytest.fixture
def feature_log(caplog):
    """INFO records of the feature modules even when ``setup_logging`` stopped propagation."""
    loggers = [logging.getLogger(name) for name in ("talkingface.audio.features", "talkingface.audio.deepspeech")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="talkingface.audio"):
        yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)


# --- a minimal protobuf writer for hand-made GraphDefs -------------------------------------------

def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tensor_proto(array: np.ndarray, how: str = "content") -> bytes:
    dtype = {np.float32: 1, np.int32: 3}[array.dtype.type]
    shape = b"".join(field(2, varint(1 << 3) + varint(d)) for d in array.shape)
    body = varint(1 << 3) + varint(dtype) + field(2, shape)
    flat = array.reshape(-1)
    if how == "content":
        body += field(4, array.astype(array.dtype.newbyteorder("<")).tobytes())
    elif how == "packed_floats":
        body += field(5, struct.pack(f"<{len(flat)}f", *flat))
    elif how == "unpacked_floats":
        body += b"".join(varint(5 << 3 | 5) + struct.pack("<f", v) for v in flat)
    elif how == "one_float":  # TensorFlow repeats the last value over the shape
        body += field(5, struct.pack("<f", flat[0]))
    elif how == "packed_ints":
        body += field(7, b"".join(varint(int(v) & (2**64 - 1)) for v in flat))
    return body


def const_node(name: str, array: np.ndarray, how: str = "content") -> bytes:
    attr = field(1, b"value") + field(2, field(8, tensor_proto(array, how)))
    return field(1, field(1, name.encode()) + field(2, b"Const") + field(5, attr))


def write_graph(path: Path, consts: dict[str, np.ndarray], how: str = "content") -> Path:
    path.write_bytes(b"".join(const_node(name, value, how) for name, value in consts.items()))
    return path


def tf_layout_weights(sizes: DeepSpeechSizes, lstm_names=("kernel", "bias"), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    widths = {1: (sizes.n_input, sizes.n_hidden_1), 2: (sizes.n_hidden_1, sizes.n_hidden_2),
              3: (sizes.n_hidden_2, sizes.n_hidden_3), 5: (2 * sizes.n_cell, sizes.n_hidden_5),
              6: (sizes.n_hidden_5, sizes.n_classes)}
    consts = {}
    for index, (fan_in, width) in widths.items():
        consts[f"h{index}"] = rng.normal(0, 1 / math.sqrt(fan_in), (fan_in, width)).astype(np.float32)
        consts[f"b{index}"] = rng.normal(0, 0.3, width).astype(np.float32)
    for direction in ("fw", "bw"):
        scope = f"bidirectional_rnn/{direction}/basic_lstm_cell/"
        rows = sizes.n_hidden_3 + sizes.n_cell
        consts[scope + lstm_names[0]] = rng.normal(0, 1 / math.sqrt(rows), (rows, 4 * sizes.n_cell)).astype(np.float32)
        consts[scope + lstm_names[1]] = rng.normal(0, 0.5, 4 * sizes.n_cell).astype(np.float32)
    return consts


SMALL = DeepSpeechSizes(n_input=6, n_hidden_1=5, n_hidden_2=4, n_hidden_3=6, n_cell=3, n_hidden_5=4, n_classes=7)


# --- reader -------------------------------------------------------------------------------------

def test_reader_finds_every_v010_tensor_and_the_io_nodes():
    with GraphDefReader(GRAPH) as reader:
        consts = reader.const_names()
        assert set(V010_CONSTS) <= set(consts)
        ops = {node.name: node.op for node in reader.nodes}
        assert ops["input_node"] == "Placeholder" and ops["input_lengths"] == "Placeholder"
        assert ops["logits"] == "Reshape"
        assert reader.tensor_info("h1").shape == (494, 16)
        assert reader.tensor_info("bidirectional_rnn/bw/basic_lstm_cell/kernel").shape == (16 + 8, 32)
        h1 = np.array(reader.tensor("h1"))
    state, sizes = read_graph(GRAPH)
    assert sizes == DeepSpeechSizes(n_input=494, n_hidden_1=16, n_hidden_2=16, n_hidden_3=16, n_cell=8,
                                    n_hidden_5=16, n_classes=29)
    assert torch.equal(state["fc1.weight"], torch.from_numpy(h1).t())


@pytest.mark.parametrize("how", ["content", "packed_floats", "unpacked_floats", "one_float"])
def test_reader_decodes_each_tensor_encoding(tmp_path, how):
    value = np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5
    graph = write_graph(tmp_path / "g.pb", {"w": value}, how)
    with GraphDefReader(graph) as reader:
        got = reader.tensor("w")
        want = np.full((2, 3), value.flat[0], np.float32) if how == "one_float" else value
        assert got.shape == (2, 3) and np.array_equal(got, want)
    graph = write_graph(tmp_path / "i.pb", {"n": np.array([-3, 7, 300], np.int32)}, "packed_ints")
    with GraphDefReader(graph) as reader:
        assert reader.tensor("n").tolist() == [-3, 7, 300]


def test_older_weight_names_and_typed_values_convert(tmp_path):
    consts = tf_layout_weights(SMALL, ("weights", "biases"))
    state, sizes = read_graph(write_graph(tmp_path / "old.pb", consts, "packed_floats"))
    assert sizes == SMALL
    assert torch.equal(state["fc6.weight"], torch.from_numpy(consts["h6"]).t())


# --- LSTM gate order and forget bias ----------------------------------------------------------

def tf_basic_lstm(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, forget_bias: float = 1.0,
                  gates: str = "ijfo") -> np.ndarray:
    """TensorFlow's BasicLSTMCell unrolled in numpy: z = [x, h] W + b split as i, j, f, o."""
    hidden = kernel.shape[1] // 4
    h, c, outputs = np.zeros(hidden), np.zeros(hidden), []
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for step in x:
        blocks = dict(zip(gates, np.split(np.concatenate([step, h]) @ kernel + bias, 4)))
        c = c * sigmoid(blocks["f"] + forget_bias) + sigmoid(blocks["i"]) * np.tanh(blocks["j"])
        h = np.tanh(c) * sigmoid(blocks["o"])
        outputs.append(h)
    return np.array(outputs)


def torch_lstm(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    hidden = kernel.shape[1] // 4
    lstm = torch.nn.LSTM(kernel.shape[0] - hidden, hidden).double()
    lstm.load_state_dict({k: v.double() for k, v in lstm_from_tf(torch.from_numpy(kernel), torch.from_numpy(bias))
                          .items()})
    with torch.no_grad():
        return lstm(torch.from_numpy(x)[:, None])[0][:, 0].numpy()


@pytest.mark.numerics
def test_lstm_mapping_reproduces_basic_lstm_cell_and_wrong_mappings_are_caught():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5))
    kernel, bias = rng.normal(0, 0.6, (5 + 4, 16)).astype(np.float32), rng.normal(0, 0.8, 16).astype(np.float32)
    ours = torch_lstm(x, kernel, bias)
    assert np.abs(ours - tf_basic_lstm(x, kernel, bias)).max() < 1e-6
    # the comparison is sensitive to each mistake a port can make
    for wrong in (tf_basic_lstm(x, kernel, bias, forget_bias=0.0), tf_basic_lstm(x, kernel, bias, gates="ifjo"),
                  tf_basic_lstm(x, kernel, bias, gates="ijof")):
        assert np.abs(ours - wrong).max() > 1e-2


@pytest.mark.numerics
def test_logits_match_tensorflow(expected, network):
    worst = 0.0
    for k in range(3):
        windows = mfcc_windows(int16_samples(expected[f"wav_{k}"]))
        with torch.inference_mode():
            logits50 = network(torch.from_numpy(windows)).numpy()
        assert logits50.shape == expected[f"logits50_{k}"].shape
        worst = max(worst, np.abs(logits50 - expected[f"logits50_{k}"]).max())
        features = deepspeech_logits(expected[f"wav_{k}"], network)
        assert features.shape == expected[f"expected_{k}"].shape
        worst = max(worst, np.abs(features - expected[f"expected_{k}"]).max())
    print(f"max |ours - TensorFlow| = {worst:.3g}")
    assert worst <= TOLERANCE
    # the fixture is not degenerate: a forget bias left out changes the logits far beyond the tolerance
    broken = build_network(GRAPH)
    with torch.no_grad():
        broken.lstm.bias_ih_l0[8:16] -= 1.0
    assert np.abs(deepspeech_logits(expected["wav_2"], broken) - expected["expected_2"]).max() > 100 * TOLERANCE


# --- input pipeline -----------------------------------------------------------------------------

def dinet_input(samples: np.ndarray) -> np.ndarray:
    """DINet's deep_speech.py input, written literally with python_speech_features."""
    rows = python_speech_features.mfcc(signal=samples, samplerate=16000, numcep=26)[::2]
    padded = np.concatenate([np.zeros((9, 26)), rows, np.zeros((9, 26))])
    windows = np.stack([padded[i:i + 19].reshape(-1) for i in range(len(rows))])
    return (windows - np.mean(windows)) / np.std(windows)


@pytest.mark.numerics
def test_input_pipeline_matches_python_speech_features(expected):
    for k in range(3):
        wav = expected[f"wav_{k}"]
        ours = mfcc_windows(int16_samples(wav.astype(np.float32) / 32768.0))
        reference = dinet_input(wav)
        assert ours.dtype == np.float32 and ours.shape == reference.shape
        assert np.abs(ours - reference).max() < 1e-5
        rows = 1 + math.ceil((len(wav) - 400) / 160)
        assert len(ours) == math.ceil(rows / 2) and len(expected[f"expected_{k}"]) == math.ceil(rows / 4)


def test_int16_conversion_is_exact_and_clips():
    values = np.array([-32768, -1, 0, 1, 12345, 32767], np.int16)
    assert np.array_equal(int16_samples(values / 32768.0), values.astype(np.float64))
    assert np.array_equal(int16_samples(values), values.astype(np.float64))
    assert int16_samples(np.array([1.5, -1.5, 0.99999])).tolist() == [32767.0, -32768.0, 32767.0]


def _chunked_off_by_one(layer, rows, chunk_frames):
    """``network._chunked`` with an off-by-one slice start: the same slices, but every one after the first
    begins one row early (``rows[start - 1:end - 1]``): the row before each boundary runs twice, the last row
    never, and the rows of the later slices come out one place late."""
    if not chunk_frames or chunk_frames >= len(rows):
        return layer(rows)
    sizes = [len(part) for part in torch.tensor_split(rows, math.ceil(len(rows) / chunk_frames))]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    return torch.cat([layer(rows[start - (start > 0):end - (start > 0)]) for start, end in zip(starts, ends)])


def _chunked_out_of_order(layer, rows, chunk_frames):
    """``network._chunked`` concatenating its slices in the wrong order (last slice first)."""
    if not chunk_frames or chunk_frames >= len(rows):
        return layer(rows)
    return torch.cat([layer(part) for part in torch.tensor_split(rows, math.ceil(len(rows) / chunk_frames))][::-1])


@pytest.mark.numerics
def test_chunked_dense_layers_equal_one_shot(network, expected, monkeypatch):
    """Slicing the rows changes which BLAS kernel multiplies them (MKL picks kernels by row count), so
    the logits agree within the float32 bound of the six layers (fan-in 494), not bit for bit. The
    production slicing made wrong (off by one row at each slice boundary, slices out of order) misses the
    bound by orders of magnitude."""
    import talkingface.audio.deepspeech.network as module

    windows = torch.from_numpy(mfcc_windows(int16_samples(expected["wav_2"])))
    with torch.inference_mode():
        whole = network(windows)
        bound = fp32_bound(scale_of(whole), 494, depth=6)
        for chunk in (1, 16, 40, 64, len(windows), 10_000):  # 115 rows in 115, 8, 3, 2, 1, 1 slices
            # measured 7.2e-7 (chunk 1) and 0 (the others) against a bound of 2.3e-4
            assert_fp32_close(network(windows, chunk_frames=chunk), whole, bound, f"chunk {chunk}")
        for mutant in (_chunked_off_by_one, _chunked_out_of_order):
            monkeypatch.setattr(module, "_chunked", mutant)
            for chunk in (16, 40, 64):  # measured 1.9e3 to 5.4e3 times the bound (4.4e-1 to 1.3 of scale 1.8)
                broken = network(windows, chunk_frames=chunk)
                assert broken.shape == whole.shape
                assert max_abs_diff(broken, whole) > 100 * bound, (mutant.__name__, chunk)
            monkeypatch.undo()
    torch.manual_seed(0)
    wider = DeepSpeechNet(DeepSpeechSizes(n_hidden_1=96, n_hidden_2=96, n_hidden_3=64, n_cell=32, n_hidden_5=96))
    rows = torch.randn(500, 494)
    with torch.inference_mode():
        whole = wider(rows)
        assert_fp32_close(wider(rows, chunk_frames=128), whole, fp32_bound(scale_of(whole), 494, depth=6), "wider")


# --- converter and errors -------------------------------------------------------------------------

def test_converter_round_trip(tmp_path, expected, network):
    out = convert_graph(GRAPH, tmp_path / "sub" / "deepspeech.safetensors")
    metadata = read_metadata(out)
    assert metadata["source_sha256"] == sha256_of(GRAPH)
    assert metadata["sizes"] == ('{"n_input": 494, "n_hidden_1": 16, "n_hidden_2": 16, "n_hidden_3": 16, '
                                 '"n_cell": 8, "n_hidden_5": 16, "n_classes": 29}')
    from_pb, _ = load_weights(GRAPH)
    from_file, _ = load_weights(out)
    assert from_pb.keys() == from_file.keys() == set(load_file(out))
    assert all(torch.equal(from_pb[key], from_file[key]) for key in from_pb)
    assert np.array_equal(deepspeech_logits(expected["wav_0"], build_network(out)),
                          deepspeech_logits(expected["wav_0"], network))
    assert [p.name for p in out.parent.iterdir()] == ["deepspeech.safetensors"]  # no temporary left behind


def test_truncated_and_wrong_files_are_clear_errors(tmp_path):
    data = GRAPH.read_bytes()
    for cut in (1, 100, len(data) // 3, len(data) // 2, len(data) - 5):
        path = tmp_path / f"cut{cut}.pb"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=str(path)):
            read_graph(path)
    with pytest.raises(CheckpointError, match="truncated"):
        (tmp_path / "half.pb").write_bytes(data[: len(data) // 2])
        read_graph(tmp_path / "half.pb")
    (tmp_path / "random.pb").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match="random.pb"):
        read_graph(tmp_path / "random.pb")
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_graph(tmp_path / "empty.pb")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "absent.pb")


def test_graph_without_the_nodes_lists_what_is_missing_and_what_exists(tmp_path):
    path = write_graph(tmp_path / "other.pb", {"foo": np.zeros(3, np.float32), "bar/kernel": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError) as info:
        read_graph(path)
    message = str(info.value)
    assert str(path) in message and "missing Const nodes h1, b1" in message
    assert "bidirectional_rnn/fw/basic_lstm_cell/{kernel,bias}" in message and "foo, bar/kernel" in message
    consts = tf_layout_weights(SMALL)
    consts["h2"] = consts["h2"][:, :3]
    with pytest.raises(CheckpointError, match=r"inconsistent shapes: fc2.bias \(4,\) \(expected \(3,\)\)"):
        read_graph(write_graph(tmp_path / "bad.pb", consts))


def test_foreign_or_damaged_safetensors_are_refused(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not converted DeepSpeech weights"):
        load_weights(tmp_path / "foreign.safetensors")
    out = convert_graph(GRAPH, tmp_path / "ok.safetensors")
    state = load_file(out)
    del state["lstm.bias_hh_l0_reverse"]
    save_file(state, str(tmp_path / "partial.safetensors"), metadata=read_metadata(out))
    with pytest.raises(CheckpointError, match="partial.safetensors.*missing lstm.bias_hh_l0_reverse"):
        load_weights(tmp_path / "partial.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(out.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_weights(tmp_path / "cut.safetensors")


def test_cli_convert_deepspeech(tmp_path, capsys):
    out = tmp_path / "deepspeech-0.1.0.safetensors"
    assert main(["convert-deepspeech", str(GRAPH), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert read_metadata(out)["source_sha256"] == sha256_of(GRAPH)
    (tmp_path / "random.pb").write_bytes(np.random.default_rng(1).bytes(3000))
    assert main(["convert-deepspeech", str(tmp_path / "random.pb"), str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "random.pb") in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit) as info:
        main(["convert-deepspeech", "--help"])
    assert info.value.code == 0


# --- the registered feature -------------------------------------------------------------------------

def feature(weights: Path, **options) -> DeepSpeechLogits:
    return AUDIO_FEATURES.get("deepspeech")({"deepspeech": {"weights": str(weights), "device": "cpu", **options}})


@pytest.mark.parametrize("source", ["pb", "safetensors"])
def test_feature_at_25_fps_with_length_reconciliation(tmp_path, expected, feature_log, source):
    weights = GRAPH if source == "pb" else convert_graph(GRAPH, tmp_path / "ds.safetensors")
    extractor = feature(weights, chunk_frames=64)
    assert extractor.frame_shape() == (29,)
    wav = expected["wav_2"].astype(np.float32) / 32768.0
    reference = expected["expected_2"]
    frames = extractor.extract(wav, len(reference), 25.0)
    assert frames.shape == (58, 29) and frames.dtype == np.float32
    assert np.abs(frames - reference).max() <= TOLERANCE
    assert not feature_log.records
    padded = extractor.extract(wav, 61, 25.0)
    assert padded.shape == (61, 29) and np.array_equal(padded[58:], np.repeat(frames[-1:], 3, axis=0))
    assert "padded 3 trailing frames" in feature_log.text
    trimmed = extractor.extract(wav, 50, 25.0)
    assert np.array_equal(trimmed, frames[:50]) and "trimmed 8 trailing frames" in feature_log.text


def test_feature_at_30_fps_takes_the_nearest_row(expected, feature_log):
    extractor = feature(GRAPH)
    wav, reference = expected["wav_2"], expected["expected_2"]
    count = round(len(wav) * 30 / 16000)
    frames = extractor.extract(wav, count, 30.0)
    rows = np.floor(np.arange(count) * 25 / 30 + 0.5).astype(int)
    assert frames.shape == (69, 29) and rows[-1] == 57
    assert np.abs(frames - reference[rows]).max() <= TOLERANCE
    late = extractor.frame_features(int16_samples(wav) / 32768.0, 75, 30.0)
    assert np.array_equal(late[69:], np.repeat(late[68:69], 6, axis=0))
    assert "fall after the last 25 fps logit row" in feature_log.text


def test_missing_weights_say_where_to_get_them(tmp_path):
    extractor = feature(tmp_path / "deepspeech-0.1.0.safetensors")
    with pytest.raises(CheckpointError) as info:
        extractor.extract(np.zeros(16000, np.float32), 25)
    message = str(info.value)
    assert str(tmp_path / "deepspeech-0.1.0.safetensors") in message
    assert "output_graph.pb" in message and "convert-deepspeech" in message and "deepspeech-0.1.0-models" in message
    with pytest.raises(ConfigError, match="deepspeech.weigths"):
        AUDIO_FEATURES.get("deepspeech")({"deepspeech": {"weigths": "x"}})
    with pytest.raises(ConfigError, match="chunk_frames"):
        feature(GRAPH, chunk_frames=8)
    assert AUDIO_FEATURES.get("deepspeech")().options["weights"] == "checkpoints/deepspeech-0.1.0.safetensors"


def test_preprocessing_stores_deepspeech_features_with_the_configured_weights(tmp_path, capsys):
    from helpers import cli_tokens
    from talkingface.cli import main
    from talkingface.data import ClipStore

    base = {"progress": False, "demo": {"clips": 1}, "data": {"root": str(tmp_path / "raw"),
                                                               "processed_dir": str(tmp_path / "processed")},
            "preprocess": {"workers": 1, "features": ["deepspeech"], "split": {"val": 0.0, "test": 0.0}}}
    missing = {**base, "deepspeech": {"weights": str(tmp_path / "absent.safetensors")}}
    assert main(["preprocess", "--dataset", "demo", *cli_tokens(missing)]) == 1
    assert "DeepSpeech v0.1.0 weights not found at" in capsys.readouterr().err
    graph = Path(__file__).parent / "fixtures" / "deepspeech" / "tiny_graph.pb"
    assert main(["preprocess", "--dataset", "demo", *cli_tokens({**base, "deepspeech": {"weights": str(graph)}})]) == 0
    clip = ClipStore(tmp_path / "processed" / "demo").clip("demo_00")
    logits = clip.feature("deepspeech")
    assert logits.shape == (clip.meta["frames"], 29) and np.isfinite(logits).all() and logits.std() > 0

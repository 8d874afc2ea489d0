"""Compare our DeepSpeech port with TensorFlow on your own ``output_graph.pb``.

    python -m talkingface.audio.deepspeech.selfcheck output_graph.pb [--wav speech.wav] [--tolerance 1e-3]

Runs the frozen graph with TensorFlow (imported as DINet does: ``deepspeech/input_node:0``,
``deepspeech/input_lengths:0`` -> ``deepspeech/logits:0``) and ``DeepSpeechNet`` with the weights read
from the same file, on the same input windows, and prints the largest absolute difference of the
logits. Exit status: 0 within tolerance, 1 beyond it, 2 when TensorFlow is not installed. Without
``--wav`` a deterministic 3 s test signal is used. ``--converted`` also checks a .safetensors file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .convert import build_network
from .frontend import SAMPLE_RATE, int16_samples, mfcc_windows


def test_signal(seconds: float = 3.0) -> np.ndarray:
    """A deterministic voiced-like signal: a gliding pulse train with a slow amplitude envelope, in [-1, 1]."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 2.5 * t)) * (np.sin(2 * np.pi * 0.4 * t) > -0.6)
    noise = np.random.default_rng(0).standard_normal(len(t))
    return np.clip(0.15 * voiced * envelope + 0.01 * noise, -1, 1)


def tensorflow_logits(graph: Path, windows: np.ndarray) -> np.ndarray:
    """``(T, 29)`` logits of the frozen graph for ``(T, 494)`` windows, computed by TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf1.import_graph_def(graph_def, name="deepspeech")
    with tf1.Session(graph=tf_graph) as session:
        logits = session.run("deepspeech/logits:0", feed_dict={"deepspeech/input_node:0": windows[np.newaxis],
                                                              "deepspeech/input_lengths:0": [len(windows)]})
    return logits[:, 0, :]


def ours(path: Path, windows: np.ndarray) -> np.ndarray:
    network = build_network(path, "cpu")
    with torch.inference_mode():
        return network(torch.from_numpy(windows)).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", type=Path, help="output_graph.pb of DeepSpeech v0.1.0")
    parser.add_argument("--wav", type=Path, help="speech to test with (any format ffmpeg/PyAV reads)")
    parser.add_argument("--converted", type=Path, help="also compare this converted .safetensors")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest acceptable |difference| of logits")
    args = parser.parse_args(argv)

    if args.wav:
        from ...media import read_audio

        wav = read_audio(args.wav, sample_rate=SAMPLE_RATE)
    else:
        wav = test_signal()
    windows = mfcc_windows(int16_samples(wav))
    results = {"ours (.pb)": ours(args.graph, windows)}
    if args.converted:
        results["ours (.safetensors)"] = ours(args.converted, windows)
    try:
        reference = tensorflow_logits(args.graph, windows)
    except ImportError:
        print("TensorFlow is not installed; ran our port only "
              f"(logits {results['ours (.pb)'].shape}, |max| {np.abs(results['ours (.pb)']).max():.4f})")
        return 2
    worst = 0.0
    for name, logits in results.items():
        diff = float(np.abs(logits - reference).max())
        worst = max(worst, diff)
        print(f"{name} vs TensorFlow: {len(windows)} steps, max |difference| {diff:.3g} "
              f"(|logits| up to {np.abs(reference).max():.3g}); argmax agreement "
              f"{(logits.argmax(1) == reference.argmax(1)).mean():.4f}")
    print("OK" if worst <= args.tolerance else f"FAILED: above the tolerance {args.tolerance}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

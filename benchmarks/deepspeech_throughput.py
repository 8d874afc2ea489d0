"""DeepSpeech v0.1.0 feature throughput: seconds of audio per second on this machine, at the released sizes.

A randomly initialised ``DeepSpeechNet`` (494 -> 2048 -> 2048 -> 4096 -> BiLSTM 2 x 2048 -> 2048 -> 29,
122.7M parameters; the weights do not change the cost) runs the whole feature pipeline (int16 cast,
MFCC, windows, normalisation, network, 25 fps decimation) on 10 s and 60 s of audio. The FLOPs of the
network are counted with torch.utils.flop_counter (dense layers; the BiLSTM's, which it cannot see,
by hand) and compared with a large fp32 matmul's GFLOP/s
measured in the same run. Writes benchmarks/results/deepspeech_throughput.json.

    python benchmarks/deepspeech_throughput.py [--seconds 10 60] [--repeats 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from talkingface.audio.deepspeech import DeepSpeechNet, deepspeech_logits, int16_samples, mfcc_windows  # noqa: E402
from talkingface.audio.deepspeech.network import V010_SIZES  # noqa: E402
from talkingface.device import resolve_device  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise under a 4 Hz syllable envelope with a 150 Hz pulse train: MFCCs that vary like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = np.sign(np.sin(2 * np.pi * 150 * t)) * 0.2 + 0.05 * rng.standard_normal(len(t))
    return (voiced * np.sin(2 * np.pi * 4 * t) ** 2).astype(np.float32)


def lstm_flops(steps: int) -> int:
    """Multiply-adds of the BiLSTM, counted by hand: FlopCounterMode does not see inside aten LSTM kernels.

    Per step and direction: ``[x, h] (n_hidden_3 + n_cell)`` times ``W (.., 4 n_cell)``, 2 FLOPs each.
    """
    sizes = V010_SIZES
    return 2 * steps * 2 * (sizes.n_hidden_3 + sizes.n_cell) * 4 * sizes.n_cell


def network_flops(network: DeepSpeechNet, steps: int, device: torch.device) -> tuple[int, int]:
    """(FLOPs counted by torch.utils.flop_counter, i.e. the dense layers; the BiLSTM's FLOPs) of one pass."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(steps, V010_SIZES.n_input, device=device))
    return counter.get_total_flops(), lstm_flops(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per length")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--chunk-frames", type=int, default=4096)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "deepspeech_throughput.json"))
    args = parser.parse_args()

    load_before = [round(v, 2) for v in os.getloadavg()]  # other jobs on a shared machine slow every number
    device = resolve_device(args.device)
    torch.manual_seed(0)
    network = DeepSpeechNet(V010_SIZES, device=device).eval()
    params = sum(p.numel() for p in network.parameters())
    peak = matmul_peak_gflops()
    runs = []
    for seconds in args.seconds:
        wav = speech_like(seconds)
        steps = len(mfcc_windows(int16_samples(wav)))
        dense_flops, recurrent_flops = network_flops(network, steps, device)
        flops = dense_flops + recurrent_flops
        deepspeech_logits(wav[:16000], network, args.chunk_frames)  # warm-up
        best_total = best_frontend = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            mfcc_windows(int16_samples(wav))
            best_frontend = min(best_frontend, time.perf_counter() - start)
            start = time.perf_counter()
            logits = deepspeech_logits(wav, network, args.chunk_frames)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best_total = min(best_total, time.perf_counter() - start)
        runs.append({
            "audio_seconds": seconds, "network_steps": steps, "feature_rows": len(logits),
            "seconds": round(best_total, 3), "frontend_seconds": round(best_frontend, 3),
            "audio_seconds_per_second": round(seconds / best_total, 2),
            "gflop": round(flops / 1e9, 2), "gflop_dense_flop_counter": round(dense_flops / 1e9, 2),
            "gflop_lstm_analytic": round(recurrent_flops / 1e9, 2),
            "gflop_per_audio_second": round(flops / 1e9 / seconds, 2),
            "achieved_gflops": round(flops / 1e9 / best_total, 1),
            "fraction_of_matmul_peak": round(flops / 1e9 / best_total / peak, 3),
        })
        print(json.dumps(runs[-1]))
    result = {
        "benchmark": "deepspeech_throughput",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}, {device}",
        "parameters": params, "sizes": V010_SIZES.as_dict(), "chunk_frames": args.chunk_frames,
        "repeats": args.repeats, "matmul_peak_gflops": round(peak, 1), "runs": runs,
        "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "random weights at the v0.1.0 sizes; seconds include MFCC + network + decimation (best of repeats). "
                "The BiLSTM is a sequence of batch-1 matrix-vector products (2 x 2048x8192 weights read per 20 ms "
                "step), memory-bound, so it reaches a small fraction of matmul peak",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

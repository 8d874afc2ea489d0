"""ReconNet (Deep3DFaceRecon's ResNet-50 coefficient regressor) throughput on this machine against the fp32
limit: FLOPs per 224 x 224 image from ``torch.utils.flop_counter``, frames/s at batch 1 and 8 (2 threads, best
of a few rounds, random weights in the official layout), and the best matmul peak of the same run. Writes
benchmarks/results/face3d_recon.json.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "face3d_recon.json"
THREADS = 2


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from talkingface.face3d import ReconNet

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    net = ReconNet().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, 224, 224))
    gflop = counter.get_total_flops() / 1e9
    peaks = [matmul_peak_gflops()]
    rows = []
    for batch in (1, 8):
        images = torch.rand(batch, 3, 224, 224)
        best = float("inf")
        with torch.no_grad():
            net(images)  # warm-up
            for _ in range(3):
                start = time.perf_counter()
                net(images)
                best = min(best, time.perf_counter() - start)
        rows.append({"batch": batch, "frames_per_s": round(batch / best, 2), "gflops": round(batch * gflop / best, 1)})
        print(json.dumps(rows[-1]), flush=True)
    peaks.append(matmul_peak_gflops())
    limit = max(peaks)
    for row in rows:
        row["fraction_of_limit"] = round(row["gflops"] / limit, 3)
    result = {"benchmark": "face3d_recon", "machine": f"{platform.machine()}, {os.cpu_count()} cores, {THREADS} torch "
              f"threads, torch {torch.__version__}", "gflop_per_image": round(gflop, 2),
              "matmul_peak_gflops": [round(p, 1) for p in peaks], "limit_frames_per_s": round(limit / gflop, 2),
              "rows": rows}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUTPUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

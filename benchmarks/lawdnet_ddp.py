"""LawDNet under data parallelism (2 gloo processes on CPU): the dead warp layer computed (the release, which
then needs DDP's ``find_unused_parameters=True``) or skipped (``lawdnet.skip_dead_layers``, our default).
Times the generator's forward + backward + the trainer's gradient averaging, and counts what is all-reduced.
Writes benchmarks/results/lawdnet_ddp.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "lawdnet_ddp.json"


def worker(rank: int, port: int, spec: dict, results) -> None:
    import talkingface
    from talkingface.training.optimization import average_gradients

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = talkingface.build_model("lawdnet", {"lawdnet": {
            "mouth_region_size": spec["mouth"], "audio_feature": "mfcc", "sync_audio_feature": "mfcc",
            "skip_dead_layers": spec["skip"]}})
        generator = model.generator.train()
        params = [p for p in generator.parameters() if p.requires_grad]
        height, width = model.networks.image_size
        gen = torch.Generator().manual_seed(rank)
        inputs = (torch.rand(spec["batch"], 3, height, width, generator=gen),
                  torch.rand(spec["batch"], 15, height, width, generator=gen),
                  torch.randn(spec["batch"], model.audio_channels, 5, generator=gen))
        times = []
        for step in range(spec["steps"] + 1):
            for p in params:
                p.grad = None
            dist.barrier()
            start = time.perf_counter()
            generator(*inputs).square().mean().backward()
            with_grad = sum(p.numel() for p in params if p.grad is not None)
            average_gradients(params)
            if step:  # the first is a warm-up
                times.append(time.perf_counter() - start)
        reduced = sum(p.numel() for p in params if p.grad is not None)
        results[rank] = {"seconds_per_step": min(times), "parameters": sum(p.numel() for p in params),
                         "with_gradient": with_grad, "all_reduced": reduced}
    finally:
        dist.destroy_process_group()


def run(spec: dict) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(worker, args=(port, spec, results), nprocs=2)
    row = dict(results[0])
    row["seconds_per_step"] = round(max(results[0]["seconds_per_step"], results[1]["seconds_per_step"]), 3)
    return {**spec, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mouth", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    rows = [run({"mouth": args.mouth, "batch": args.batch, "steps": args.steps, "skip": skip}) for skip in (False, True)]
    for row in rows:
        print(json.dumps(row), flush=True)
    result = {"benchmark": "lawdnet_ddp", "machine": f"{platform.machine()}, {os.cpu_count()} cores, 2 gloo "
              f"processes x 1 thread, torch {torch.__version__}", "rows": rows,
              "notes": "generator forward + backward + talkingface.training.optimization.average_gradients; best "
                       "step of each process, the slower process reported; all_reduced = parameters whose "
                       "gradient is averaged (unused ones keep grad None and are not sent)"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)


if __name__ == "__main__":
    main()

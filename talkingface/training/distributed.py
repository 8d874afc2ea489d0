"""torch.distributed set-up for runs launched with ``torchrun`` (one process per device)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_info() -> DistributedInfo:
    """Read rank and world size from the environment variables torchrun sets."""
    return DistributedInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                           int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device, backend: str = "auto") -> DistributedInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU by default)."""
    info = distributed_info()
    if info.enabled and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (identical start)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_reduce_means(values: dict[str, float], count: int, device: torch.device) -> dict[str, float]:
    """Average per-process means weighted by their sample counts."""
    if not (dist.is_initialized() and dist.get_world_size() > 1) or not values:
        return values
    keys = sorted(values)
    buffer = torch.tensor([values[k] * count for k in keys] + [float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(buffer)
    total = buffer[-1].item()
    return {k: buffer[i].item() / max(total, 1.0) for i, k in enumerate(keys)}


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the process group (end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

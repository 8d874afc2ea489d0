"""Manual-optimisation machinery shared by every model: AMP, accumulation, gradient averaging."""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


class OptimizationContext:
    """What the trainer tells a model about how to run backward and optimizer steps.

    ``micro_step`` counts micro-batches; an optimizer steps only on the last micro-batch of each
    accumulation window. Under ``torch.distributed`` gradients are averaged across processes right
    before each step, which works for any number of optimizers per batch (GAN G and D steps).
    """

    def __init__(self, amp: bool = False, amp_dtype: torch.dtype = torch.float16, accumulation: int = 1,
                 device_type: str = "cpu", clip_grad_norm: float | None = None):
        if accumulation < 1:
            raise ValueError("accumulation must be >= 1")
        self.amp = amp
        self.amp_dtype = amp_dtype
        self.accumulation = accumulation
        self.clip_grad_norm = clip_grad_norm
        self.scaler = torch.amp.GradScaler(device_type, enabled=amp and amp_dtype == torch.float16)
        self.micro_step = 0
        self._stepped = False

    @property
    def at_boundary(self) -> bool:
        return (self.micro_step + 1) % self.accumulation == 0

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        self.scaler.scale(loss / self.accumulation).backward(retain_graph=retain_graph)

    def step(self, optimizer: torch.optim.Optimizer, clip_grad_norm: float | None = None) -> bool:
        if not self.at_boundary:
            return False
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            average_gradients(params)
        self.scaler.unscale_(optimizer)
        clip = clip_grad_norm if clip_grad_norm is not None else self.clip_grad_norm
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self._stepped = True
        return True

    def finish_micro_step(self) -> None:
        """Called by the trainer after each ``training_step``."""
        if self.at_boundary and self._stepped:
            self.scaler.update()
        self._stepped = False
        self.micro_step += 1


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce the mean gradient of ``params`` in one flat buffer.

    A parameter without a gradient in every process (outside the graph, like LawDNet's dead warp layer) keeps
    ``grad = None``, as in one process, so the optimizer skips it (AdamW's weight decay included) and it costs
    no bandwidth: one small all-reduce of a used/unused flag per parameter decides (DDP's
    ``find_unused_parameters`` without its graph walk). A gradient missing in some processes only counts as zero.
    """
    if not params:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(used, op=dist.ReduceOp.MAX)
    params = [p for p, flag in zip(params, used.tolist()) if flag]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n

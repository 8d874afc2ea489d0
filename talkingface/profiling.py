"""Where a run spends its time, FLOPs and memory, stage by stage (``talkingface benchmark``, docs/benchmarks.md).

Code marks its stages with ``with stage("name"):``. Without an active ``StageRecorder`` that costs one global
read. With one, every stage gets its *exclusive* wall time (a nested stage pauses its parent, so the stages of
one thread add up to the time they cover), its calls, and on request its FLOPs (``torch.utils.flop_counter``
running through the whole recording, each count attributed to the innermost open stage), the peak resident set
size while it was the innermost open stage (Linux' ``VmHWM``, reset at every stage boundary through
``/proc/self/clear_refs``) and, on CUDA, the peak allocated GPU memory (``torch.cuda.reset_peak_memory_stats``
at every boundary). Work outside every stage is recorded under ``OUTSIDE``.

Threads: stages of other threads (the dubbing loop's ``overlap_io``) are timed too, so with overlap the stages'
times may add up to more than the wall time; FLOPs are counted in the recording thread only (PyTorch's
dispatch modes are per thread): record FLOPs with overlap off.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

OUTSIDE = "(outside stages)"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_HWM = re.compile(rb"^VmHWM:\s+(\d+) kB", re.MULTILINE)


@dataclass
class StageStats:
    """One stage's totals over a recording."""

    seconds: float = 0.0
    calls: int = 0
    flops: int = 0
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int = 0


@dataclass
class _Frame:
    name: str
    since: float


class _Memory:
    """The process's peak RSS since the last ``take`` (VmHWM, reset through clear_refs where Linux allows it)."""

    def __init__(self) -> None:
        self.readable = _STATUS.is_file()
        self.resettable = self.readable and self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open(_CLEAR_REFS, "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def take(self) -> int:
        if not self.readable:
            return 0
        match = _HWM.search(_STATUS.read_bytes())
        peak = int(match.group(1)) * 1024 if match else 0
        if self.resettable:
            self._reset()
        return peak


class StageRecorder:
    """Records the stages entered while it is active (``with StageRecorder() as rec:``); one at a time.

    ``flops``: count FLOPs (``FlopCounterMode`` is active for the whole recording; it slows PyTorch down, so time
    in a separate recording). ``memory``: peak RSS per stage. ``cuda``: also the peak GPU memory per stage."""

    def __init__(self, flops: bool = False, memory: bool = True, cuda: bool = False):
        self.stats: dict[str, StageStats] = {}
        self.order: list[str] = []  # stage names in the order they were first entered
        self.declared: tuple[str, ...] = ()  # the stages the recorded work said it has (``declare_stages``)
        self._flops = flops
        self._memory = _Memory() if memory else None
        self._cuda = cuda and torch.cuda.is_available()
        self._lock = threading.RLock()
        self._local = threading.local()
        self._counter = None
        self._counted = 0
        self._owner: int | None = None
        self.wall_seconds = 0.0

    # ---- activation ---------------------------------------------------------------------------------------------
    def __enter__(self) -> "StageRecorder":
        global _ACTIVE
        if _ACTIVE is not None:
            raise RuntimeError("a StageRecorder is already recording")
        self._owner = threading.get_ident()
        if self._flops:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        if self._memory is not None:
            self._memory.take()  # the recording's peaks start now
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        self._started = time.perf_counter()
        self._stack().append(_Frame(OUTSIDE, self._started))
        _ACTIVE = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _ACTIVE
        _ACTIVE = None
        now = time.perf_counter()
        self._account(self._stack().pop(), now)
        self.wall_seconds = now - self._started
        if self._counter is not None:
            self._counter.__exit__(None, None, None)

    @property
    def records_gpu(self) -> bool:
        """Whether the stages' peak GPU memory is recorded (CUDA asked for and present)."""
        return self._cuda

    @property
    def memory_resettable(self) -> bool:
        """Whether the per-stage RSS peaks are exact (else each is the process's peak so far)."""
        return self._memory is not None and self._memory.resettable

    # ---- stages -------------------------------------------------------------------------------------------------
    def _stack(self) -> list[_Frame]:
        """This thread's open stages, innermost last."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _stats(self, name: str) -> StageStats:
        if name not in self.stats:
            self.stats[name] = StageStats()
            self.order.append(name)
        return self.stats[name]

    def _account(self, frame: _Frame, now: float) -> None:
        """Credit ``frame`` (the innermost open stage of this thread) with what happened since it last ran."""
        with self._lock:
            stats = self._stats(frame.name)
            stats.seconds += now - frame.since
            if self._counter is not None and threading.get_ident() == self._owner:
                total = self._counter.get_total_flops()
                stats.flops += total - self._counted
                self._counted = total
            if self._memory is not None:
                stats.peak_rss_bytes = max(stats.peak_rss_bytes, self._memory.take())
            if self._cuda:
                stats.peak_gpu_bytes = max(stats.peak_gpu_bytes, int(torch.cuda.max_memory_allocated()))
                torch.cuda.reset_peak_memory_stats()

    def enter(self, name: str) -> None:
        frames = self._stack()
        now = time.perf_counter()
        if frames:
            self._account(frames[-1], now)
        frames.append(_Frame(name, now))

    def exit(self) -> None:
        frames = self._stack()
        now = time.perf_counter()
        frame = frames.pop()
        self._account(frame, now)
        with self._lock:
            self.stats[frame.name].calls += 1
        if frames:
            frames[-1].since = time.perf_counter()


_ACTIVE: StageRecorder | None = None


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark the enclosed work as stage ``name`` for the active ``StageRecorder`` (nothing without one)."""
    recorder = _ACTIVE
    if recorder is None:
        yield
        return
    recorder.enter(name)
    try:
        yield
    finally:
        recorder.exit()


@contextlib.contextmanager
def module_stage(module: torch.nn.Module, name: str) -> Iterator[None]:
    """While the block runs, every forward of ``module`` is marked as stage ``name`` (forward hooks, removed at the
    end): a network's share of work that calls it from many places."""
    def enter(*_: object) -> None:
        if _ACTIVE is not None:
            _ACTIVE.enter(name)

    def leave(*_: object) -> None:
        if _ACTIVE is not None:
            _ACTIVE.exit()

    handles = [module.register_forward_pre_hook(enter), module.register_forward_hook(leave, always_call=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def declare_stages(names: tuple[str, ...]) -> None:
    """Tell the active recorder which stages the work it records has (a report lists those that did not run too);
    the first declaration of a recording holds."""
    if _ACTIVE is not None and not _ACTIVE.declared:
        _ACTIVE.declared = tuple(names)


def staged(name: str, iterator: Iterator) -> Iterator:
    """``iterator`` with the work of producing each item marked as stage ``name`` (e.g. decoding frames)."""
    while True:
        with stage(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


class StagedContext:
    """A context manager whose entry and exit are marked as stage ``name`` (e.g. a writer flushing on exit)."""

    def __init__(self, name: str, context: contextlib.AbstractContextManager):
        self.name, self.context = name, context

    def __enter__(self):
        with stage(self.name):
            return self.context.__enter__()

    def __exit__(self, *exc: object):
        with stage(self.name):
            return self.context.__exit__(*exc)


def counting_flops() -> bool:
    """Whether the active recorder counts FLOPs (work must then stay in the recording thread)."""
    return _ACTIVE is not None and _ACTIVE._counter is not None

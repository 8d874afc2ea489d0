"""Peak memory of the current process, measured the way the benchmarks quote it.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not this process's own peak on Linux: ``execve`` keeps
the larger of the old and new high-water marks, and ``subprocess`` starts children with vfork, so a child
reports at least the RSS its parent had when it was spawned (a 1.5 GB parent makes an idle child report
1.5 GB). ``VmHWM`` in ``/proc/self/status`` belongs to the new address space only.
"""
from __future__ import annotations

import re
import resource
import threading
import time
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MB (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    if STATUS.exists():
        match = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
        if match:
            return round(int(match.group(1)) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RssSampler:
    """VmRSS every 0.2 s in a thread; ``stop(marks)`` gives the sampled peak of each phase, the phases ending at the
    ``(name, perf_counter time)`` marks and the last one called ``dubbing`` (VmHWM is the process's exact peak; this
    says where it happens)."""

    def __init__(self, interval: float = 0.2):
        self.samples: list[tuple[float, float]] = []
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            text = Path("/proc/self/status").read_text()
            self.samples.append((time.perf_counter(), int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024))
            self._stop.wait(self.interval)

    def stop(self, marks: list[tuple[str, float]]) -> dict:
        self._stop.set()
        self._thread.join()
        peaks, start = {}, float("-inf")
        for name, end in [*marks, ("dubbing", float("inf"))]:
            values = [mb for t, mb in self.samples if start < t <= end]
            peaks[f"{name}_peak_rss_mb"] = round(max(values), 1) if values else None
            start = end
        return {**peaks, "samples": len(self.samples)}

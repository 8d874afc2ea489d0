"""Peak memory of the current process, measured the way the benchmarks quote it.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not this process's own peak on Linux: ``execve`` keeps
the larger of the old and new high-water marks, and ``subprocess`` starts children with vfork, so a child
reports at least the RSS its parent had when it was spawned (a 1.5 GB parent makes an idle child report
1.5 GB). ``VmHWM`` in ``/proc/self/status`` belongs to the new address space only.
"""
from __future__ import annotations

import re
import resource
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MB (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    if STATUS.exists():
        match = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
        if match:
            return round(int(match.group(1)) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

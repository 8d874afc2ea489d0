"""``talkingface benchmark``: per-stage speed and memory of dubbing, as shares of the machine's measured limit
(docs/benchmarks.md). ``benchmark`` runs models in child processes; ``run_once`` is one run in this process."""
from .command import benchmark, dubbing_models
from .machine import machine_info, matmul_peak_gflops
from .report import RUN_FIELDS, STAGE_FIELDS
from .run import RunSpec, run_once
from .video import parse_size, talking_head_video

__all__ = ["RUN_FIELDS", "STAGE_FIELDS", "RunSpec", "benchmark", "dubbing_models", "machine_info",
           "matmul_peak_gflops", "parse_size", "run_once", "talking_head_video"]

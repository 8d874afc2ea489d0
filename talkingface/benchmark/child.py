"""A benchmark run in its own process: ``python -m talkingface.benchmark.child '<RunSpec JSON>' [--threads N]``
prints the run's report as one JSON line (or ``{"error": ...}`` and exits 1)."""
from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m talkingface.benchmark.child")
    parser.add_argument("spec")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    import torch

    from ..errors import TalkingFaceError
    from ..log import setup_logging
    from .run import RunSpec, run_once

    if args.threads:
        torch.set_num_threads(args.threads)
    setup_logging("WARNING")
    logging.captureWarnings(True)
    try:
        report = run_once(RunSpec.from_dict(json.loads(args.spec)))
    except (TalkingFaceError, OSError) as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

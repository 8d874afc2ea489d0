"""Coloured console logging (colorlog) plus a plain log file per run."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import colorlog
from tqdm.auto import tqdm

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", log_file: str | Path | None = None, rank: int = 0) -> logging.Logger:
    """Configure the ``talkingface`` logger; ranks other than 0 only log warnings."""
    logger = logging.getLogger("talkingface")
    logger.setLevel(level.upper() if rank == 0 else "WARNING")
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = colorlog.StreamHandler(sys.stderr)
    console.setFormatter(colorlog.ColoredFormatter(
        "%(log_color)s" + _FORMAT, datefmt="%H:%M:%S",
        log_colors={"DEBUG": "cyan", "INFO": "green", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold_red"},
        no_color=not sys.stderr.isatty()))
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return logger


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 initial: int = 0) -> tqdm:
    """A tqdm bar with ETA on stderr; redrawn at most every 10 s when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, dynamic_ncols=True,
                mininterval=0.2 if sys.stderr.isatty() else 10.0)

"""Write a PNG grid of frames from one demo clip, with its ground-truth mouth opening plotted below.

    python docs/scripts/demo_frame_grid.py grid.png [--clip 0] [--seed 0] [--size 256] [--stride 2]

The clip is generated into a temporary folder (or ``--work-dir``) exactly as the dataset writes it,
then decoded from its mp4, so the grid shows what the preprocessing will see.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from talkingface.data.demo import write_demo_clip  # noqa: E402
from talkingface.media import read_frames  # noqa: E402


def plot_grid(video: Path, output: Path, rows: int, cols: int, stride: int) -> None:
    """Draw ``rows`` x ``cols`` frames of ``video``, ``stride`` apart, and the opening curve."""
    frames = read_frames(video)
    truth = json.loads(video.with_suffix(".json").read_text(encoding="utf-8"))
    opening = truth["mouth_opening"]
    first = max(0, min(int(truth["fps"] * 0.2), len(frames) - rows * cols * stride))  # skip the lead silence
    shown = [i for i in range(first, first + rows * cols * stride, stride) if i < len(frames)]

    figure = plt.figure(figsize=(cols * 1.6, rows * 1.75 + 1.8))
    grid = figure.add_gridspec(rows + 1, cols, height_ratios=[1.0] * rows + [1.0])
    for slot, index in enumerate(shown):
        axis = figure.add_subplot(grid[slot // cols, slot % cols])
        axis.imshow(frames[index])
        axis.set_title(f"#{index}  open {opening[index]:.2f}", fontsize=7)
        axis.axis("off")
    curve = figure.add_subplot(grid[rows, :])
    curve.plot(opening, color="tab:red", linewidth=1)
    curve.plot(shown, [opening[i] for i in shown], "o", color="black", markersize=2)
    curve.set_xlim(0, len(opening) - 1)
    curve.set_ylim(-0.05, 1.05)
    curve.set_xlabel("frame (25 fps)")
    curve.set_ylabel("opening")
    figure.suptitle(f"{video.stem}: \"{truth['sentence']}\" ({truth['voice']})", fontsize=9)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="PNG file to write")
    parser.add_argument("--clip", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=6)
    parser.add_argument("--stride", type=int, default=2, help="frames between shown frames")
    parser.add_argument("--work-dir", type=Path, help="folder for the clip (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        video = write_demo_clip(args.work_dir or scratch, args.clip, args.seed, args.size)
        plot_grid(video, args.output, args.rows, args.cols, args.stride)
    print(args.output)


if __name__ == "__main__":
    main()

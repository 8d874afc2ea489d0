"""Speed of talkingface.face3d's rasterizer on a BFM-sized mesh: rasterize + interpolate per-vertex colours,
forward and forward + backward, at 224 x 224 and 256 x 256, batch 1 and 4, on 2 threads. Writes
benchmarks/results/face3d_raster.json.

The mesh has exactly the BFM front face's counts, 35,709 vertices and 70,789 triangles: a 180 x 180 grid mapped
onto an ellipse covering ~60 % of the image (a curved sheet: depth grows away from the centre), 3,309 triangles
split at their centroid and 89 boundary ears (each split adds 1 vertex and 2 triangles, each ear 1 triangle).
Alongside the times it records the (triangle, pixel) candidate pairs per frame, the covered pixels, the fp32
matmul peak (benchmarks/trainer_overhead.py), this machine's elementwise throughput, and for the forward rows the
"floor": the tensor operations no PyTorch-op z-buffer renderer of the mesh can avoid, timed alone in the same run
(``primitive_floor_ms``; docs/face3d.md, "Benchmark").

    python benchmarks/face3d_raster.py            # full size, writes the JSON (several minutes on 2 cores)
    python benchmarks/face3d_raster.py --tiny     # smoke run: a small mesh at 32 x 32, prints, writes nothing
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_overhead import matmul_peak_gflops  # noqa: E402

from talkingface.face3d import candidate_pairs, render  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "face3d_raster.json"
THREADS = 2
BFM_VERTICES, BFM_TRIANGLES = 35_709, 70_789


def face_like_mesh(side: int, splits: int, ears: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``side`` x ``side`` grid on the unit disc (u, v, depth), ``splits`` triangles split at their centroid,
    ``ears`` triangles on three consecutive boundary vertices. Returns vertices (N, 3) and faces (F, 3)."""
    t = np.linspace(-1.0, 1.0, side)
    u, v = np.meshgrid(t, t)
    x, y = u * np.sqrt(1 - v**2 / 2), v * np.sqrt(1 - u**2 / 2)  # square -> disc (elliptical grid mapping)
    vertices = np.stack([x.ravel(), y.ravel()], 1)
    corner = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None, :]).ravel()
    faces = np.concatenate([np.stack([corner, corner + 1, corner + side + 1], 1),
                            np.stack([corner, corner + side + 1, corner + side], 1)])
    chosen = np.unique(np.linspace(0, len(faces) - 1, splits).round().astype(np.int64))
    assert len(chosen) == splits
    centroids = vertices[faces[chosen]].mean(1)
    new = len(vertices) + np.arange(splits)
    a, b, c = faces[chosen].T
    faces = np.concatenate([np.delete(faces, chosen, 0), np.stack([a, b, new], 1), np.stack([b, c, new], 1),
                            np.stack([c, a, new], 1)])
    vertices = np.concatenate([vertices, centroids])
    ring = np.concatenate([np.arange(side - 1), (side - 1) + side * np.arange(side - 1),  # boundary, in order
                           side * side - 1 - np.arange(side - 1), side * (side - 1) - side * np.arange(side - 1)])
    starts = 2 * np.unique(np.linspace(0, len(ring) // 2 - 1, ears).round().astype(np.int64))
    assert len(starts) == ears
    faces = np.concatenate([faces, np.stack([ring[starts], ring[(starts + 1) % len(ring)],
                                             ring[(starts + 2) % len(ring)]], 1)])
    depth = 1.0 + 0.5 * (vertices**2).sum(1)
    return np.concatenate([vertices, depth[:, None]], 1), faces


def bfm_sized_mesh() -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = face_like_mesh(180, splits=3309, ears=89)
    assert (len(vertices), len(faces)) == (BFM_VERTICES, BFM_TRIANGLES), (len(vertices), len(faces))
    return vertices, faces


def in_pixels(mesh: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Unit-disc mesh -> pixel coordinates: an ellipse of semi-axes 0.39 W, 0.49 H (60 % of the image)."""
    scale = np.array([0.39 * width, 0.49 * height, 1.0])
    offset = np.array([width / 2, height / 2, 0.0])
    return torch.tensor(mesh * scale + offset, dtype=torch.float32)


def best_seconds(step, rounds: int) -> float:
    step()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def elementwise_gelem_per_s(n: int = 1 << 22, rounds: int = 10) -> float:
    """Best rate of a float32 ``a * b + c`` over ``n`` elements (two ops), in 1e9 element-ops per second."""
    a, b, c = torch.rand(n), torch.rand(n), torch.rand(n)
    out = torch.empty(n)

    def step():
        torch.mul(a, b, out=out)
        out.add_(c)

    return 2 * n / best_seconds(step, rounds) / 1e9


def primitive_floor_ms(vertices: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, pairs: int, covered: int,
                       size: int, rounds: int) -> dict:
    """ms per frame of the tensor operations no PyTorch-op z-buffer renderer of this mesh can avoid, timed alone
    in this run: gather each triangle's corners and write its 9 edge coefficients; expand the triangles to their
    candidate pairs (``repeat_interleave``) and gather each pair's coefficients; evaluate the 3 edge functions per
    pair (two fused multiply-adds each); keep the nearest key per pixel (``scatter_reduce`` amin); write the covered
    pixels' face index, 3 barycentrics and depth; interpolate 3 colour channels there (3 gathers, 3 multiply-adds).
    ``pairs`` and ``covered`` are per frame."""
    batch, triangles = vertices.shape[0], faces.shape[0]
    generator = torch.Generator().manual_seed(1)
    counts = torch.full((batch * triangles,), pairs // triangles, dtype=torch.long)
    counts[: pairs * batch - int(counts.sum())] += 1  # exactly `pairs` per frame, spread over the triangles
    owner = torch.arange(batch * triangles)
    xy = torch.rand(batch * pairs, 2, generator=generator) * size
    keys = torch.randint(0, 1 << 62, (batch * pairs,), generator=generator)
    pixel_of_pair = torch.randint(0, batch * size * size, (batch * pairs,), generator=generator)
    pixels = torch.randperm(batch * size * size, generator=generator)[: batch * covered].sort().values
    flat_colours = colours.reshape(-1, 3)
    corner_rows = torch.randint(0, flat_colours.shape[0], (3, batch * covered), generator=generator)
    weights = torch.rand(batch * covered, 3, generator=generator)
    timings = {}

    def setup():
        corners = vertices[:, faces]  # (B, F, 3, 3)
        timings["coefficients"] = (corners - corners.roll(1, dims=2)).reshape(batch * triangles, 9)

    def expand():
        pair_owner = owner.repeat_interleave(counts)
        timings["pair_coefficients"] = timings["coefficients"].index_select(0, pair_owner)

    def evaluate():
        c = timings["pair_coefficients"]
        for k in range(3):
            torch.addcmul(torch.addcmul(c[:, 3 * k + 2], c[:, 3 * k], xy[:, 0]), c[:, 3 * k + 1], xy[:, 1])

    def zbuffer():
        torch.full((batch * size * size,), torch.iinfo(torch.int64).max).scatter_reduce_(0, pixel_of_pair, keys,
                                                                                           "amin")

    def output():
        values = torch.rand(batch * covered, 5)
        torch.zeros(batch * size * size, 5).index_copy_(0, pixels, values)

    def interpolate():
        mixed = sum(flat_colours.index_select(0, corner_rows[k]) * weights[:, k:k + 1] for k in range(3))
        torch.zeros(batch * size * size, 3).index_copy_(0, pixels, mixed)

    parts = {name: 1e3 * best_seconds(step, rounds) / batch for name, step in
             (("setup", setup), ("expand", expand), ("evaluate", evaluate), ("zbuffer", zbuffer),
              ("output", output), ("interpolate", interpolate))}
    return {"floor_ms_per_frame": round(sum(parts.values()), 2), "floor_parts_ms": {k: round(v, 3) for k, v in
                                                                                    parts.items()}}


def measure(mesh: np.ndarray, faces: torch.Tensor, size: int, batch: int, rounds: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    vertices = in_pixels(mesh, size, size)[None].repeat(batch, 1, 1)
    vertices[..., :2] += torch.rand(batch, 1, 2, generator=generator)  # a sub-pixel shift per frame
    colours = torch.rand(batch, len(mesh), 3, generator=generator)
    weights = torch.rand(batch, size, size, 3, generator=generator)
    pairs = candidate_pairs(vertices, faces, size, size)
    covered = render(vertices, faces, colours, size, size)[1].sum((1, 2))

    def forward():
        with torch.no_grad():
            render(vertices, faces, colours, size, size)

    def backward():
        v, c = vertices.clone().requires_grad_(), colours.clone().requires_grad_()
        (render(v, faces, c, size, size)[0] * weights).sum().backward()

    rows = []
    floor = primitive_floor_ms(vertices, faces, colours, int(pairs.float().mean()), int(covered.float().mean()),
                               size, rounds)
    for mode, step in (("forward", forward), ("forward+backward", backward)):
        seconds = best_seconds(step, rounds)
        rows.append({"size": size, "batch": batch, "mode": mode, "ms_per_frame": round(1e3 * seconds / batch, 2),
                     "candidate_pairs_per_frame": int(pairs.float().mean()),
                     "covered_pixels_per_frame": int(covered.float().mean())})
        if mode == "forward":
            rows[-1].update(floor, floor_over_measured=round(floor["floor_ms_per_frame"] / rows[-1]["ms_per_frame"], 3))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run at 32 x 32 on a small mesh; writes nothing")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.tiny:
        mesh, faces = face_like_mesh(12, splits=10, ears=3)
        sizes, batches, rounds, matmul_size = (32,), (1, 2), 1, 256
        shape = "12 x 12 grid on an ellipse, 10 centroid splits, 3 boundary ears (smoke run)"
    else:
        mesh, faces = bfm_sized_mesh()
        sizes, batches, rounds, matmul_size = (224, 256), (1, 4), args.rounds, 4096
        shape = ("180 x 180 grid on an ellipse covering ~60 % of the image, curved depth, 3,309 centroid splits, "
                 "89 boundary ears")
    faces_t = torch.tensor(faces, dtype=torch.long)
    rows = [row for size in sizes for batch in batches for row in measure(mesh, faces_t, size, batch, rounds)]
    result = {
        "what": "talkingface.face3d render (rasterize + interpolate RGB per-vertex colours), ms per frame, best of "
                f"{rounds} rounds; forward+backward: gradients w.r.t. vertices and colours",
        "mesh": {"vertices": len(mesh), "triangles": len(faces), "shape": shape},
        "threads": THREADS, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "matmul_peak_gflops": round(matmul_peak_gflops(size=matmul_size), 1),
        "elementwise_gelem_per_s": round(elementwise_gelem_per_s(), 2),
        "results": rows,
    }
    if args.tiny:
        print(json.dumps({k: v for k, v in result.items() if k != "results"}))
        return
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUTPUT, result)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()

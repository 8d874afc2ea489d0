"""The pure-PyTorch triangle rasterizer (talkingface.face3d.rasterizer) against closed forms: coverage of one
triangle, occlusion of two, a quad's coverage with no holes on the shared diagonal (also where rounding
decides), barycentrics and interpolation at pixel centres, gradients against central differences in float64,
chunking and batching.

Expected coverage is computed independently in float64 numpy from the float32 vertices (exact for the
integer/half-integer cases, and elsewhere guarded: each test asserts no pixel centre lies within 1e-3 px of an
edge, so rounding cannot decide a pixel).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from numerics import fp32_bound, max_abs_diff
from talkingface.face3d import Fragments, interpolate, rasterize, render
import talkingface.face3d.rasterizer as rasterizer_module


# ---- closed forms in float64 numpy ------------------------------------------------------------------------------
def centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (x, y), each (H, W): (j + 0.5, i + 0.5)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return x + 0.5, y + 0.5


def edge_values(triangle: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(3, H, W): edge k (opposite vertex k, from vertex k+1 to k+2) at each centre, times sign(area): all >= 0
    inside or on the triangle; divided by 2 * |area| they are the barycentric coordinates."""
    t = np.asarray(triangle, np.float64)
    area2 = (t[1, 0] - t[0, 0]) * (t[2, 1] - t[0, 1]) - (t[1, 1] - t[0, 1]) * (t[2, 0] - t[0, 0])
    values = []
    for k in range(3):
        a, b = t[(k + 1) % 3], t[(k + 2) % 3]
        values.append(((b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])) * np.sign(area2))
    return np.stack(values)


def inside(triangle: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (edge_values(triangle, x, y) >= 0).all(0)


def barycentric(triangle: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, 3) closed-form barycentric coordinates."""
    values = edge_values(triangle, x, y)
    return np.moveaxis(values / values.sum(0), 0, -1)


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point (..., 2) to the segment a-b."""
    d = b - a
    t = np.clip(((points - a) @ d) / (d @ d), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * d), axis=-1)


def min_edge_distance(triangles: np.ndarray, height: int, width: int) -> float:
    """Smallest distance from any pixel centre to any edge of any of ``triangles`` (T, 3, 2)."""
    x, y = centres(height, width)
    points = np.stack([x, y], -1)
    return min(float(segment_distance(points, t[k].astype(np.float64), t[(k + 1) % 3].astype(np.float64)).min())
               for t in np.asarray(triangles) for k in range(3))


def f32(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- one triangle ------------------------------------------------------------------------------------------------
TRIANGLE = np.array([[3.3, 2.6], [27.2, 9.3], [11.9, 29.6]], np.float32)
SIZE = 32


def triangle_vertices(depth=(1.0, 2.0, 3.0)) -> torch.Tensor:
    return torch.cat([torch.from_numpy(TRIANGLE), f32(depth)[:, None]], 1)[None]


def test_single_triangle_coverage_barycentrics_and_linear_attribute():
    assert min_edge_distance(TRIANGLE[None], SIZE, SIZE) > 1e-3  # no centre near an edge: coverage is unambiguous
    x, y = centres(SIZE, SIZE)
    expected = inside(TRIANGLE, x, y)
    vertices, faces = triangle_vertices(), torch.tensor([[0, 1, 2]])
    fragments = rasterize(vertices, faces, SIZE, SIZE)
    assert fragments.mask.shape == (1, SIZE, SIZE) and fragments.face_index.dtype == torch.long
    assert np.array_equal(fragments.mask[0].numpy(), expected) and expected.sum() > 200
    assert np.array_equal(fragments.face_index[0].numpy(), np.where(expected, 0, -1))

    # Barycentrics: each edge value is a sum of products up to ``span``^2 (span: the largest coordinate difference
    # at a covered centre), divided by 2 * area, so float32 rounding is amplified by span^2 / (2 * area) (1.24 here).
    # Measured 1.0e-7 against a bound of 2.4e-6; the break below misses by 3.0e-2.
    span = float(np.ptp(np.concatenate([TRIANGLE, np.stack([x[expected], y[expected]], 1)]), axis=0).max())
    area2 = abs(float(edge_values(TRIANGLE, x, y)[:, 0, 0].sum()))
    bound = fp32_bound(1.0, terms=4, amplification=span**2 / area2)
    truth = barycentric(TRIANGLE, x, y)[expected]
    got = fragments.barycentric[0].numpy()[expected]
    error = max_abs_diff(got, truth)
    assert error <= bound, (error, bound)
    assert (fragments.barycentric[0].numpy()[~expected] == 0).all()
    # break: the pixel-corner convention (centres at integers) misses by orders of magnitude
    corner = barycentric(TRIANGLE, x - 0.5, y - 0.5)[expected]
    assert max_abs_diff(got, corner) > 100 * bound

    # depth and a linear attribute are linear in screen space: closed form at the pixel centres
    depth_truth = (truth * np.array([1.0, 2.0, 3.0])).sum(1)
    assert max_abs_diff(fragments.depth[0].numpy()[expected], depth_truth) <= 3.0 * bound
    linear = lambda px, py: np.stack([0.25 * px - 0.5 * py + 3.0, 0.1 * px + 0.2 * py], -1)  # noqa: E731
    attributes = torch.from_numpy(linear(TRIANGLE[:, 0], TRIANGLE[:, 1]).astype(np.float32))[None]
    image = interpolate(attributes, fragments, faces)[0].numpy()
    scale = float(np.abs(linear(x, y)).max())
    assert max_abs_diff(image[expected], linear(x, y)[expected]) <= scale * bound
    assert (image[~expected] == 0).all()
    assert max_abs_diff(image[expected], linear(x - 0.5, y - 0.5)[expected]) > 100 * scale * bound

    # the other winding covers the same pixels with the same weights (permuted)
    flipped = rasterize(vertices, faces[:, [0, 2, 1]], SIZE, SIZE)
    assert torch.equal(flipped.mask, fragments.mask)
    assert max_abs_diff(flipped.barycentric[..., [0, 2, 1]], fragments.barycentric) <= bound


def test_clipping_degenerate_and_invalid_triangles():
    # a triangle reaching outside the image: coverage is the closed form restricted to the image
    big = np.array([[-9.7, -5.2], [40.3, 6.1], [10.6, 44.9]], np.float32)
    assert min_edge_distance(big[None], 24, 20) > 1e-3
    degenerate = [[2.0, 2.0, 0.0], [12.0, 7.0, 0.0], [22.0, 12.0, 0.0]]  # collinear, in front: ignored
    vertices = torch.cat([torch.cat([torch.from_numpy(big), torch.ones(3, 1)], 1), f32(degenerate),
                          f32([[1.0, 1.0, 0.0], [float("nan"), 5.0, 0.0], [9.0, 20.0, 0.0]])])[None]
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    fragments = rasterize(vertices, faces, 24, 20)
    x, y = centres(24, 20)
    assert np.array_equal(fragments.face_index[0].numpy(), np.where(inside(big, x, y), 0, -1))
    image, mask = render(vertices, faces, torch.ones(1, 9, 2), 24, 20, background=-1.0)
    assert torch.equal(mask, fragments.mask)
    assert max_abs_diff(image[mask], 1.0) <= fp32_bound(1.0, terms=3) and (image[~mask] == -1).all()

    with pytest.raises(ValueError):
        rasterize(vertices[0], faces, 8, 8)
    with pytest.raises(ValueError):
        rasterize(vertices, faces.float(), 8, 8)
    with pytest.raises(ValueError):
        rasterize(vertices, faces + 1, 8, 8)
    with pytest.raises(ValueError):
        rasterize(vertices, faces, 0, 8)
    empty = rasterize(vertices, faces[:0], 4, 5)
    assert (empty.face_index == -1).all() and not empty.mask.any()


# ---- two triangles: occlusion -------------------------------------------------------------------------------------
PAIR = np.array([[[2.3, 3.1], [28.7, 5.4], [9.4, 26.9]],
                 [[14.6, 1.3], [30.1, 24.9], [4.2, 17.7]]], np.float32)


def pair_vertices(depths) -> torch.Tensor:
    """Six vertices: the two triangles of PAIR, with per-vertex depths (6,)."""
    return torch.cat([torch.from_numpy(PAIR.reshape(6, 2)), f32(depths)[:, None]], 1)[None]


def test_two_triangles_nearer_wins_and_swapping_depths_swaps_the_winner():
    assert min_edge_distance(PAIR, SIZE, SIZE) > 1e-3
    x, y = centres(SIZE, SIZE)
    in0, in1 = inside(PAIR[0], x, y), inside(PAIR[1], x, y)
    assert (in0 & in1).sum() > 50 and (in0 & ~in1).sum() > 50 and (in1 & ~in0).sum() > 50
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    for near, far in ((0, 1), (1, 0)):
        depths = [2.0] * 6
        depths[3 * near:3 * near + 3] = [1.0] * 3
        face_index = rasterize(pair_vertices(depths), faces, SIZE, SIZE).face_index[0].numpy()
        expected = np.where(in0 & in1, near, np.where(in0, 0, np.where(in1, 1, -1)))
        assert np.array_equal(face_index, expected), (near, far)

    # interpenetrating: triangle 0's depth is x / 16, triangle 1's is 1; 0 is nearer exactly where x < 16
    depths = [float(v) / 16.0 for v in PAIR[0, :, 0]] + [1.0] * 3
    fragments = rasterize(pair_vertices(depths), faces, SIZE, SIZE)
    expected = np.where(in0 & in1, np.where(x < 16.0, 0, 1), np.where(in0, 0, np.where(in1, 1, -1)))
    assert np.array_equal(fragments.face_index[0].numpy(), expected)
    nearest = np.where(expected == 0, x / 16.0, 1.0)[expected >= 0]
    assert max_abs_diff(fragments.depth[0].numpy()[expected >= 0], nearest) <= fp32_bound(2.0, terms=4, depth=2)


# ---- a quad: shared diagonal, no holes --------------------------------------------------------------------------
def test_quad_with_centres_on_its_edges_is_covered_exactly_once():
    # corners at pixel centres; the diagonal (0.5, 0.5)-(20.5, 10.5) passes through 11 centres (0.5 + 2k, 0.5 + k)
    quad = f32([[0.5, 0.5, 1.0], [20.5, 0.5, 1.0], [20.5, 10.5, 1.0], [0.5, 10.5, 1.0]])[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    height, width = 16, 24
    x, y = centres(height, width)
    rectangle = (x <= 20.5) & (y <= 10.5)  # every centre inside or on the quad
    assert rectangle.sum() == 21 * 11
    on_diagonal = (x - 0.5) == 2 * (y - 0.5)
    on_diagonal &= rectangle
    assert on_diagonal.sum() == 11
    alone = [rasterize(quad, faces[k:k + 1], height, width).mask[0].numpy() for k in range(2)]
    assert np.array_equal(alone[0] | alone[1], rectangle)  # no hole
    assert np.array_equal(alone[0] & alone[1], on_diagonal)  # only centres exactly on the diagonal are shared
    for order in ([0, 1, 2], [0, 2, 1]):  # both windings
        face_index = rasterize(quad, faces[:, order], height, width).face_index[0].numpy()
        # equal depth on the diagonal: the tie goes to the smaller face index
        expected = np.where(alone[0], 0, np.where(alone[1], 1, -1))
        assert np.array_equal(face_index, expected), order

    # an axis-aligned rectangle with corners off the pixel grid: closed-form pixel count
    x0, x1, y0, y1 = 2.3, 17.8, 1.6, 9.2
    rect = f32([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]])[None]
    count = (math.floor(x1 - 0.5) - math.ceil(x0 - 0.5) + 1) * (math.floor(y1 - 0.5) - math.ceil(y0 - 0.5) + 1)
    assert count == 16 * 7
    for order in ([0, 1, 2], [0, 2, 1]):
        assert int(rasterize(rect, faces[:, order], height, width).mask.sum()) == count


def random_quads(count: int, size: int, seed: int) -> np.ndarray:
    """(count, 4, 2) float32 convex quads: four points at sorted random angles on random ellipses; every other one
    in the opposite order (the other winding)."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, (count, 4)), 1)
    centre = rng.uniform(0.35 * size, 0.65 * size, (count, 1, 2))
    radii = rng.uniform(0.15 * size, 0.35 * size, (count, 1, 2))
    quads = centre + radii * np.stack([np.cos(angles), np.sin(angles)], -1)
    quads[1::2] = quads[1::2, ::-1]
    return quads.astype(np.float32)


def test_random_quads_have_no_holes_along_the_diagonal():
    size, band = 32, 1e-4
    quads = random_quads(40, size, seed=3)
    vertices = torch.cat([torch.from_numpy(quads), torch.zeros(len(quads), 4, 1)], 2)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    first = rasterize(vertices, faces[:1], size, size).mask.numpy()
    second = rasterize(vertices, faces[1:], size, size).mask.numpy()
    both = rasterize(vertices, faces, size, size).mask.numpy()
    x, y = centres(size, size)
    points = np.stack([x, y], -1)
    for q, quad in enumerate(quads.astype(np.float64)):
        outer = np.min([segment_distance(points, quad[k], quad[(k + 1) % 4]) for k in range(4)], 0)
        diagonal = segment_distance(points, quad[0], quad[2])
        exact = inside(quad[[0, 1, 2]], x, y) | inside(quad[[0, 2, 3]], x, y)
        clear = outer > band  # centres not within rounding reach of the quad's outline
        assert np.array_equal((first[q] | second[q])[clear], exact[clear]), q
        assert np.array_equal(both[q], first[q] | second[q]), q
        assert (diagonal[first[q] & second[q]] <= band).all(), q  # double coverage only on the diagonal
    assert both.sum() > 40 * 50


def naive_inside(triangles: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """The realistic bug: each triangle's edges as ``A x + B y + C`` with C through the edge's own start vertex,
    in float32. (T, 3, 2) triangles, (T, K) points -> (T, K) inside or on."""
    x, y = triangles[..., 0], triangles[..., 1]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    result = torch.ones(sx.shape, dtype=torch.bool)
    for k in range(3):
        a, b = (k + 1) % 3, (k + 2) % 3
        coef_a, coef_b = y[:, a] - y[:, b], x[:, b] - x[:, a]
        coef_c = -(coef_a * x[:, a] + coef_b * y[:, a])
        edge = coef_a[:, None] * sx + coef_b[:, None] * sy + coef_c[:, None]
        result &= edge * torch.sign(area)[:, None] >= 0
    return result


def test_centres_on_shared_edges_are_never_lost():
    """300 quads whose shared diagonal runs through 4 pixel centres in exact arithmetic, with float32 endpoints
    off the lattice line by rounding: every such centre is covered by at least one of the two triangles."""
    rng = np.random.default_rng(5)
    count, size = 300, 32
    step = rng.integers(1, 4, (count, 2)) * rng.choice([-1, 1], (count, 2))  # lattice direction of the diagonal
    start = 16.5 - 2 * step  # centres start + k * step, k = 0..3
    before, after = rng.uniform(0.1, 0.9, (2, count, 1))
    p, q = start - before * step, start + (3 + after) * step
    normal = np.stack([-step[:, 1], step[:, 0]], 1) / np.linalg.norm(step, axis=1, keepdims=True)
    middle = (p + q) / 2
    sides = rng.uniform(1.5, 4.0, (2, count, 1))
    quads = np.stack([p, middle + sides[0] * normal, q, middle - sides[1] * normal], 1).astype(np.float32)
    quads[1::2] = quads[1::2][:, [0, 3, 2, 1]]  # the other winding; the diagonal is still vertices 0-2
    on_diagonal = start[:, None, :] + np.arange(4)[None, :, None] * step[:, None, :]  # (count, 4, 2)
    vertices = torch.cat([torch.from_numpy(quads), torch.zeros(count, 4, 1)], 2)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    image, column, row = np.arange(count)[:, None], (on_diagonal[..., 0] - 0.5).astype(int), \
        (on_diagonal[..., 1] - 0.5).astype(int)
    covered = [rasterize(vertices, faces[k:k + 1], size, size).mask.numpy()[image, row, column] for k in range(2)]
    assert (covered[0] | covered[1]).all()
    assert (covered[0] & covered[1]).sum() > 300  # many evaluate to exactly 0: on the edge, inside both
    # break: the same edge functions with C through each edge's own start vertex lose some of these centres
    sx, sy = (torch.from_numpy(on_diagonal[..., i].astype(np.float32)) for i in range(2))
    naive = [naive_inside(torch.from_numpy(quads[:, order]), sx, sy) for order in ([0, 1, 2], [0, 2, 3])]
    assert int((~(naive[0] | naive[1])).sum()) >= 5


# ---- gradients: central differences in float64 ----------------------------------------------------------------
class NegatedGradient(torch.autograd.Function):
    """The identity whose backward flips the gradient's sign (a break planted into the rasterizer)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def gradient_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch 2, 7 vertices: a quad (two triangles) and a nearer triangle partly in front of it."""
    quad = [[1.3, 2.2, 2.0], [13.6, 1.7, 2.5], [14.2, 13.1, 3.0], [2.1, 12.4, 2.2]]
    front = [[6.7, 5.4, 1.0], [15.3, 8.9, 0.5], [8.2, 15.1, 0.8]]
    first = torch.tensor(quad + front, dtype=torch.float64)
    second = first.clone()
    second[:, :2] = 16.0 - second[:, :2]  # mirrored: the other winding
    return torch.stack([first, second]), torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]]), \
        torch.rand(2, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_gradients_match_central_differences(monkeypatch):
    vertices, faces, colours = gradient_scene()
    size = 16
    for b in range(2):
        assert min_edge_distance(vertices[b, faces, :2].numpy(), size, size) > 1e-3  # h = 1e-6 moves no edge over
    generator = torch.Generator().manual_seed(1)
    image_weights = torch.randn(2, size, size, 3, generator=generator, dtype=torch.float64)
    depth_weights = torch.randn(2, size, size, generator=generator, dtype=torch.float64)

    def loss(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        fragments = rasterize(v, faces, size, size)
        return (interpolate(c, fragments, faces) * image_weights).sum() + (fragments.depth * depth_weights).sum()

    def analytic() -> tuple[torch.Tensor, torch.Tensor]:
        v, c = vertices.clone().requires_grad_(), colours.clone().requires_grad_()
        loss(v, c).backward()
        return (torch.zeros_like(v) if v.grad is None else v.grad), c.grad

    v_grad, c_grad = analytic()
    # breaks of the rasterizer itself: its barycentrics and depth detached, their backward's sign flipped
    winners = rasterizer_module._winners
    monkeypatch.setattr(rasterizer_module, "_winners", lambda *a: tuple(t.detach() for t in winners(*a)))
    detached = analytic()[0]
    monkeypatch.setattr(rasterizer_module, "_winners", lambda *a: tuple(NegatedGradient.apply(t) for t in winners(*a)))
    flipped = analytic()[0]
    monkeypatch.undo()
    h = 1e-6
    numeric = []
    for tensor in (vertices, colours):
        grad = torch.zeros_like(tensor)
        for index in np.ndindex(*tensor.shape):
            plus, minus = tensor.clone(), tensor.clone()
            plus[index] += h
            minus[index] -= h
            args = (plus, colours) if tensor is vertices else (vertices, plus)
            args_minus = (minus, colours) if tensor is vertices else (vertices, minus)
            grad[index] = (loss(*args) - loss(*args_minus)) / (2 * h)
        numeric.append(grad)
    # Error of a central difference: rounding eps64 * |loss| / h (~1e-9 here) plus h^2 times the third derivative
    # (~1e-12); 1e-6 of the gradient's scale leaves > 100x.
    for grad, fd, what in ((v_grad, numeric[0], "vertices"), (c_grad, numeric[1], "colours")):
        scale = float(fd.abs().max())
        assert scale > 1.0, what
        assert max_abs_diff(grad, fd) <= 1e-6 * scale, what
    bound = 1e-6 * float(numeric[0].abs().max())
    assert max_abs_diff(detached, numeric[0]) > 1e5 * bound  # measured: the whole gradient (scale / bound = 1e6)
    assert max_abs_diff(flipped, numeric[0]) > 1e5 * bound  # measured: twice the scale
    assert float(numeric[0][..., 2].abs().max()) > 1.0  # depth gets gradient through Fragments.depth
    assert float(c_grad[:, 4:].abs().min()) > 0


# ---- meshes, chunking, batching ------------------------------------------------------------------------------------
def grid_mesh(cells: int, lo: float, hi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (cells+1)^2-vertex grid over the square [lo, hi]^2 with jittered interior vertices (the outline stays a
    square), on a curved depth; faces alternate windings."""
    rng = np.random.default_rng(seed)
    t = np.linspace(lo, hi, cells + 1)
    x, y = np.meshgrid(t, t)
    step = (hi - lo) / cells
    jitter = rng.uniform(-0.3 * step, 0.3 * step, (2,) + x.shape)
    jitter[:, [0, -1], :] = 0
    jitter[:, :, [0, -1]] = 0
    x, y = x + jitter[0], y + jitter[1]
    z = ((x - 32) ** 2 + (y - 32) ** 2) / 100.0
    vertices = torch.tensor(np.stack([x, y, z], -1).reshape(-1, 3), dtype=torch.float32)
    n = cells + 1
    corner = (np.arange(cells)[:, None] * n + np.arange(cells)[None, :]).reshape(-1)
    faces = np.concatenate([np.stack([corner, corner + 1, corner + n + 1], 1),
                            np.stack([corner, corner + n, corner + n + 1], 1)])  # windings differ
    return vertices, torch.tensor(faces)


@pytest.mark.numerics
def test_grid_mesh_has_no_holes_and_chunks_and_batches_agree():
    size, lo, hi = 64, 4.2, 59.7
    vertices, faces = torch.stack([grid_mesh(49, lo, hi, seed)[0] for seed in (0, 1)]), grid_mesh(49, lo, hi, 0)[1]
    assert vertices.shape == (2, 2500, 3) and faces.shape == (4802, 3)
    fragments = rasterize(vertices, faces, size, size)
    x, y = centres(size, size)
    square = (x >= lo) & (x <= hi) & (y >= lo) & (y <= hi)
    assert np.array_equal(fragments.mask.numpy(), np.broadcast_to(square, (2, size, size)))  # no holes, no spill

    # the covering triangle contains the centre: interpolating vertex x, y gives the centre back. Error: the
    # barycentrics' rounding (coordinates ~64 over edges ~1.1 px: ~60 eps32) times an edge length (~1.1 px), plus
    # the 3-term sum's rounding of values ~64: two layers of ~eps32 * 64. Measured 7.6e-6, bound 2.1e-4.
    position = interpolate(vertices[..., :2], fragments, faces).numpy()
    bound = fp32_bound(float(size), terms=3, depth=2)
    truth = np.stack([x, y], -1)
    error = max(max_abs_diff(position[b][square], truth[square]) for b in range(2))
    assert error <= bound, (error, bound)
    interior = square & (x > lo + 1)  # break: the left neighbour's values (one pixel off), 4700x the bound
    assert max_abs_diff(np.roll(position, 1, axis=2)[0][interior], truth[interior]) > 100 * bound
    # z-buffer among the duplicates of a second, farther copy of the mesh changes nothing
    behind = vertices.clone()
    behind[..., 2] += 1.0
    doubled = rasterize(torch.cat([vertices, behind], 1), torch.cat([faces, faces + 2500]), size, size)
    assert torch.equal(doubled.face_index, fragments.face_index)

    # chunking: every chunk size gives the same bits; each batch element alone gives the same bits
    for chunk_pairs in (13, 5000):  # 13: ~1200 chunks, most of one triangle
        chunked = rasterize(vertices, faces, size, size, chunk_pairs=chunk_pairs)
        for name in ("face_index", "barycentric", "depth", "mask"):
            assert torch.equal(getattr(chunked, name), getattr(fragments, name)), (chunk_pairs, name)
    for b in range(2):
        alone = rasterize(vertices[b:b + 1], faces, size, size)
        assert torch.equal(alone.face_index[0], fragments.face_index[b])
        assert torch.equal(alone.barycentric[0], fragments.barycentric[b])


def test_interpolate_broadcasts_attributes_and_passes_gradients_to_vertices():
    vertices, faces = grid_mesh(6, 2.0, 14.0, seed=2)
    faces = faces.t().contiguous().t().int()  # a non-contiguous int32 index tensor works too
    vertices = vertices.double()[None].expand(3, -1, -1).clone().requires_grad_()
    colours = torch.linspace(0, 1, 49, dtype=torch.float64).view(1, 49, 1).requires_grad_()
    fragments = rasterize(vertices, faces, 16, 16)
    assert isinstance(fragments, Fragments) and fragments.barycentric.dtype == torch.float64
    image = interpolate(colours, fragments, faces)
    assert image.shape == (3, 16, 16, 1)
    (image * torch.arange(16.0, dtype=torch.float64)).sum().backward()
    assert float(vertices.grad.abs().sum()) > 0 and float(colours.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        interpolate(colours[0], fragments, faces)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    vertices, faces = grid_mesh(49, 4.2, 59.7, seed=0)
    vertices = vertices[None]
    colours = torch.rand(1, 2500, 3, generator=torch.Generator().manual_seed(0))
    results = {}
    for device in ("cpu", "cuda"):
        v = vertices.to(device).requires_grad_()
        c = colours.to(device).requires_grad_()
        image, mask = render(v, faces.to(device), c, 64, 64)
        (image * image).sum().backward()
        results[device] = [t.detach().cpu() for t in (image, mask, v.grad, c.grad)]
    cpu, cuda = results["cpu"], results["cuda"]
    assert torch.equal(cpu[1], cuda[1])  # coverage: the same elementwise float32 operations on both devices
    # colours and their gradients: a 3-term mix of values in [0, 1] with barycentrics of relative error ~60 eps32
    # (see the grid test); vertex gradients: summed over ~2 pixels per triangle through those barycentrics
    assert max_abs_diff(cpu[0], cuda[0]) <= fp32_bound(1.0, terms=3, depth=2, amplification=60.0)
    assert max_abs_diff(cpu[3], cuda[3]) <= fp32_bound(float(cpu[3].abs().max()), terms=8, depth=2)
    scale = float(cpu[2].abs().max())
    assert max_abs_diff(cpu[2], cuda[2]) <= fp32_bound(scale, terms=8, depth=3, amplification=60.0)

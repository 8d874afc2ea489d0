"""Differentiable triangle rasterizer in plain PyTorch (no compiled extension): z-buffer, barycentrics,
interpolation of per-vertex attributes. Conventions, tie rule and memory bound: docs/face3d.md, "Rasterizer".

Vertices are already projected: ``(B, N, 3)`` in pixel units, x to the right, y down, z the depth (smaller is
nearer). Pixel ``(row i, column j)`` has its centre at ``(j + 0.5, i + 0.5)``; it is covered by a triangle when
its centre is inside the triangle or on its boundary. Both windings render; zero-area triangles do not.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Upper bound on the (triangle, pixel) candidate pairs held at once (~150 bytes each, so ~160 MB); a chunk also
# takes the whole bounding box of its last triangle, so it holds at most this plus height * width pairs.
DEFAULT_CHUNK_PAIRS = 1 << 20

_NO_HIT = torch.iinfo(torch.int64).max  # z-buffer key of an uncovered pixel
_LOW32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Fragments:
    """What each pixel sees: the nearest triangle covering its centre.

    ``face_index`` (B, H, W) long, -1 where no triangle covers the pixel; ``barycentric`` (B, H, W, 3) the weights
    of that triangle's three vertices at the pixel centre (0 in the background; differentiable w.r.t. the
    vertices); ``depth`` (B, H, W) the interpolated z (0 in the background; differentiable); ``mask`` (B, H, W)
    bool, the covered pixels.
    """

    face_index: torch.Tensor
    barycentric: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int,
              chunk_pairs: int = DEFAULT_CHUNK_PAIRS) -> Fragments:
    """Rasterize triangles ``faces`` (F, 3) of ``vertices`` (B, N, 3) (pixel units, see the module docstring)
    into ``height`` x ``width`` fragments, keeping the nearest triangle per pixel (ties: the smaller face index).

    Work is done in chunks of about ``chunk_pairs`` (triangle, pixel) candidate pairs, on the vertices' device.
    """
    faces = _check(vertices, faces, height, width, chunk_pairs)
    dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
    vertices = vertices.to(dtype)
    batch = vertices.shape[0]
    with torch.no_grad():
        keys = _zbuffer(vertices.detach(), faces, height, width, chunk_pairs)
    hit = keys != _NO_HIT
    face_index = torch.where(hit, keys & _LOW32, -1).view(batch, height, width)
    pixels = hit.nonzero().squeeze(1)
    barycentric, depth = _winners(vertices, faces, face_index.view(-1).index_select(0, pixels), pixels, height,
                                  width)
    size = batch * height * width
    return Fragments(
        face_index=face_index,
        barycentric=vertices.new_zeros(size, 3).index_copy(0, pixels, barycentric).view(batch, height, width, 3),
        depth=vertices.new_zeros(size).index_copy(0, pixels, depth).view(batch, height, width),
        mask=hit.view(batch, height, width),
    )


def interpolate(attributes: torch.Tensor, fragments: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """Per-pixel attributes ``(B, H, W, C)``: the barycentric mix of ``attributes`` (B, N, C) (batch 1 is
    broadcast) over each pixel's triangle, 0 in the background. Differentiable w.r.t. ``attributes`` and, through
    ``fragments.barycentric``, the vertices."""
    batch, height, width = fragments.face_index.shape
    if attributes.dim() != 3 or attributes.shape[0] not in (1, batch):
        raise ValueError(f"attributes must be (B, N, C) with B = {batch} or 1, got {tuple(attributes.shape)}")
    channels = attributes.shape[2]
    faces = faces.to(device=attributes.device, dtype=torch.long)
    pixels = fragments.mask.view(-1).nonzero().squeeze(1)  # only the covered pixels are mixed
    rows = _corner_rows(faces, fragments.face_index.view(-1).index_select(0, pixels))  # (3, P)
    if attributes.shape[0] > 1:  # rows of the flattened (B * N, C) attributes
        rows = rows + attributes.shape[1] * torch.div(pixels, height * width, rounding_mode="floor")
    flat = attributes.reshape(-1, channels)
    weights = fragments.barycentric.view(-1, 3).index_select(0, pixels).to(flat.dtype)
    mixed = sum(flat.index_select(0, rows[k]) * weights[:, k:k + 1] for k in range(3))
    return flat.new_zeros(batch * height * width, channels).index_copy(0, pixels, mixed).view(
        batch, height, width, channels)


def render(vertices: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, height: int, width: int,
           background: float = 0.0, chunk_pairs: int = DEFAULT_CHUNK_PAIRS) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize and interpolate per-vertex ``colours`` (B, N, C): ``(image (B, H, W, C), mask (B, H, W))``, with
    ``background`` where no triangle covers the pixel."""
    fragments = rasterize(vertices, faces, height, width, chunk_pairs)
    image = interpolate(colours, fragments, faces)
    if background != 0.0:
        image = torch.where(fragments.mask.unsqueeze(-1), image, image.new_tensor(background))
    return image, fragments.mask


def candidate_pairs(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B,) long: the (triangle, pixel) pairs ``rasterize`` tests per batch element (pixel centres in each
    non-degenerate triangle's bounding box, clipped to the image): its work, and what ``chunk_pairs`` bounds."""
    faces = _check(vertices, faces, height, width, 1)
    if faces.numel() == 0:
        return torch.zeros(vertices.shape[0], dtype=torch.long, device=vertices.device)
    dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        counts = _setup(vertices.detach().to(dtype), faces, height, width)[3]
    return counts.view(vertices.shape[0], -1).sum(1)


# ---- the z-buffer (no autograd) ------------------------------------------------------------------------------
def _check(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int, chunk_pairs: int) -> torch.Tensor:
    if vertices.dim() != 3 or vertices.shape[2] != 3 or not vertices.is_floating_point():
        raise ValueError(f"vertices must be a floating (B, N, 3) tensor, got {vertices.dtype} {tuple(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3 or faces.is_floating_point() or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer (F, 3) tensor, got {faces.dtype} {tuple(faces.shape)}")
    if int(height) <= 0 or int(width) <= 0 or int(chunk_pairs) <= 0:
        raise ValueError(f"height, width and chunk_pairs must be positive, got {height}, {width}, {chunk_pairs}")
    faces = faces.to(device=vertices.device, dtype=torch.long).contiguous()
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(f"faces index vertices outside [0, {vertices.shape[1]})")
    return faces


def _setup(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    """Per (batch, face) instance, as rows over instances: edge coefficients (9, I), corner depths (3, I), pixel
    boxes (3, I: first column, first row, columns) and candidate pair counts (I,).

    Edge k (opposite corner k, from corner k + 1 to k + 2) is evaluated as ``A * x + B * y + C``, >= 0 inside:
    A and B are differences of the endpoints and C goes through their midpoint, then all three are multiplied
    by the sign of the area. Each of these is computed identically, up to an exact negation, for the other
    orientation of the same edge, so two triangles sharing an edge get exactly opposite values at every pixel
    centre: a centre on the shared edge is never outside both (no holes), whatever the windings.
    """
    corners = vertices.index_select(1, faces.view(-1)).view(-1, 3, 3).permute(2, 1, 0)  # (xyz, corner, I)
    x, y, z = corners.contiguous().unbind(0)  # each (3, I)
    xa, ya, xb, yb = _from(x), _from(y), _to(x), _to(y)
    area2 = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])
    a_coef, b_coef = ya - yb, xb - xa
    c_coef = -(a_coef * ((xa + xb) * 0.5) + b_coef * ((ya + yb) * 0.5))
    coefficients = torch.cat([a_coef, b_coef, c_coef]) * torch.sign(area2)  # (9, I): A0..2, B0..2, C0..2

    # pixel box: columns j with j + 0.5 in [min x, max x], clipped to the image; empty for degenerate triangles
    first_x = torch.ceil(x.amin(0) - 0.5).clamp(0, width)
    last_x = torch.floor(x.amax(0) - 0.5).clamp(-1, width - 1)
    first_y = torch.ceil(y.amin(0) - 0.5).clamp(0, height)
    last_y = torch.floor(y.amax(0) - 0.5).clamp(-1, height - 1)
    columns = (last_x - first_x + 1).clamp(min=0)
    rows = (last_y - first_y + 1).clamp(min=0)
    # a non-finite x or y makes the area non-finite; a non-finite z makes the depths' sum non-finite
    valid = torch.isfinite(area2) & (area2 != 0) & torch.isfinite(z.sum(0))
    counts = torch.where(valid, columns.nan_to_num(0.0).long() * rows.nan_to_num(0.0).long(), 0)
    boxes = torch.stack([first_x, first_y, columns.clamp(min=1)]).nan_to_num_(0.0, 0.0, 0.0).long()
    return coefficients, z, boxes, counts


def _chunks(counts: torch.Tensor, chunk_pairs: int) -> list[tuple[int, int, int]]:
    """(first instance, end instance, pairs) of each chunk: instances whose first pair falls in the same
    ``chunk_pairs`` window go together (one host transfer for the whole plan)."""
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return []
    starts = ends - counts
    limits = torch.arange(0, total + chunk_pairs, chunk_pairs, device=counts.device)
    cuts = torch.searchsorted(starts, limits).clamp(max=len(counts))
    at = torch.cat([starts, ends[-1:]])[cuts]
    plan = []
    for (first, end), (pair_first, pair_end) in zip(torch.stack([cuts[:-1], cuts[1:]], 1).tolist(),
                                                     torch.stack([at[:-1], at[1:]], 1).tolist()):
        if end > first and pair_end > pair_first:
            plan.append((first, end, pair_end - pair_first))
    return plan


def _zbuffer(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int, chunk_pairs: int) -> torch.Tensor:
    """Per pixel of the batch (B * H * W,): int64 key (depth as ordered float32 bits << 32 | face index) of the
    nearest covering triangle, ``_NO_HIT`` where none covers."""
    batch, num_faces = vertices.shape[0], faces.shape[0]
    keys = torch.full((batch * height * width,), _NO_HIT, dtype=torch.int64, device=vertices.device)
    if num_faces == 0 or batch == 0:
        return keys
    coefficients, depths, boxes, counts = _setup(vertices, faces, height, width)
    starts = torch.cumsum(counts, 0) - counts
    for first, end, pairs in _chunks(counts, chunk_pairs):
        repeats = counts[first:end]

        def expand(values: torch.Tensor) -> torch.Tensor:  # per instance -> per pair (a sorted gather, but faster)
            return values.repeat_interleave(repeats, dim=-1, output_size=pairs)

        local = expand(torch.arange(end - first, device=keys.device))
        offset = torch.arange(pairs, device=keys.device) - expand(starts[first:end] - starts[first])
        column0, row0, columns = expand(boxes[:, first:end])
        row = torch.div(offset, columns, rounding_mode="floor")
        px, py = column0 + offset - row * columns, row0 + row
        a_coef, b_coef, c_coef = expand(coefficients[:, first:end]).view(3, 3, -1)
        cx, cy = px.to(a_coef.dtype).add_(0.5), py.to(a_coef.dtype).add_(0.5)
        edges = a_coef * cx + b_coef * cy + c_coef  # (3, P)
        inside = (torch.minimum(torch.minimum(edges[0], edges[1]), edges[2]) >= 0).nonzero().squeeze(1)
        if len(inside) == 0:
            continue
        e0, e1, e2 = edges.index_select(1, inside)
        instance = local.index_select(0, inside) + first
        z0, z1, z2 = depths.index_select(1, instance)
        depth = ((e0 * z0 + e1 * z1 + e2 * z2) / (e0 + e1 + e2).clamp_min(torch.finfo(e0.dtype).tiny)).float()
        bits = depth.view(torch.int32)
        ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()  # monotone in the float's value
        key = ordered * (1 << 32) + instance % num_faces
        pixel = (instance // num_faces) * (height * width) + py.index_select(0, inside) * width \
            + px.index_select(0, inside)
        keys.scatter_reduce_(0, pixel, key, "amin")
    return keys


def _from(values: torch.Tensor) -> torch.Tensor:
    """(3, ...) per-corner values -> the start of edge k, which runs from corner k + 1 to k + 2 (opposite k)."""
    return torch.cat([values[1:], values[:1]])


def _to(values: torch.Tensor) -> torch.Tensor:
    """(3, ...) per-corner values -> the end of edge k (corner k + 2)."""
    return torch.cat([values[2:], values[:2]])


def _corner_rows(faces: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """(3, M): the three vertex indices of triangles ``face`` (M,); ``take`` on each corner's column is about twice
    as fast on a CPU as gathering (F, 3) int64 rows."""
    columns = faces.t().contiguous()
    return torch.stack([columns[k].take(face) for k in range(3)])


# ---- the winners, with autograd ------------------------------------------------------------------------------
def _winners(vertices: torch.Tensor, faces: torch.Tensor, face: torch.Tensor, pixels: torch.Tensor,
             height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Barycentrics (M, 3) and depth (M,) of triangle ``face`` at the centre of each pixel of ``pixels`` (flat
    indices into B x H x W), computed from ``vertices`` so gradients reach them."""
    image = pixels // (height * width)
    within = pixels - image * (height * width)
    row = within // width
    cx = (within - row * width).to(vertices.dtype).add_(0.5)
    cy = row.to(vertices.dtype).add_(0.5)
    rows = _corner_rows(faces, face) + vertices.shape[1] * image  # (3, M) rows of (B * N, 3)
    x, y, z = vertices.reshape(-1, 3).index_select(0, rows.reshape(-1)).view(3, -1, 3).permute(2, 0, 1)  # (3, M)
    xa, ya, xb, yb = _from(x), _from(y), _to(x), _to(y)
    edges = (xb - xa) * (cy - ya) - (yb - ya) * (cx - xa)  # (3, M): edge k opposite corner k, its weight * 2 area
    total = edges[0] + edges[1] + edges[2]
    return (edges / total).t(), (edges[0] * z[0] + edges[1] * z[1] + edges[2] * z[2]) / total

"""The augmented-self reference [P 3.1, S 6.3]: reference = s(a(I)), target = a(I).

a(): one U[-color_jitter, color_jitter] offset per RGB channel per image (0-255 scale) [S],
     clipped to the valid range [I]. Opt-in, not in the paper [I]: with data.hue_rotation = h
     > 0, then one U[-h, h] degree rotation per image of the CIELAB a*b* plane (color.py).
s(): a random thin-plate-spline warp [P]; a tps_grid x tps_grid lattice of control points on
     [-1, 1]^2, each displaced by U(-tps_scale, tps_scale) of the image size [C]. The image
     spans 2 units in grid_sample's normalised coordinates, so the displacement drawn is
     U(-tps_scale, tps_scale) * 2.
Because s() is known, so is the correspondence: for every sketch-grid cell the reference-grid
cell showing the same content. Everything is batched on tensors and driven by one
torch.Generator, so the same seed gives the same batch. It runs in the main process, after
the DataLoader, on whatever device the images are on.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from ..config import DataConfig
from .color import rotate_hue

FINE = 4  # reference search grid = FINE x the feature grid per side


def feature_grid(resolution: int, stride: int = 16) -> int:
    """Encoder grid size per side: resolution / the encoders' total stride (16: four stride-2
    layers, Table 2 [S]; `model.total_stride` of a config that changes them)."""
    if stride <= 0 or resolution <= 0 or resolution % stride:
        raise ValueError(f"resolution {resolution} must be a positive multiple of {stride} "
                         f"(the encoders downsample by {stride})")
    return resolution // stride


def cell_centres(n: int, device=None) -> torch.Tensor:
    """(n*n, 2) (x, y) centres of an n x n grid over [-1, 1]^2, row-major (index = row*n + col)."""
    c = (torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (n*n, 2)


def _tps_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(r) = r^2 log r^2 between point sets (..., M, 2) and (..., N, 2) -> (..., M, N)."""
    d2 = ((a.unsqueeze(-2) - b.unsqueeze(-3)) ** 2).sum(-1)
    return d2 * torch.log(d2.clamp_min(1e-12))


def tps_fit(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched TPS through K control points, f(src_k) = dst_k: src (K,2), dst (B,K,2) -> (B,K+3,2)."""
    b, k, _ = dst.shape
    kern = _tps_kernel(src, src)  # (K,K)
    p = torch.cat([torch.ones(k, 1, device=src.device), src], dim=1)  # (K,3)
    top = torch.cat([kern, p], dim=1)  # (K,K+3)
    bottom = torch.cat([p.t(), torch.zeros(3, 3, device=src.device)], dim=1)  # (3,K+3)
    system = torch.cat([top, bottom], dim=0).expand(b, k + 3, k + 3)
    rhs = torch.cat([dst, torch.zeros(b, 3, 2, device=dst.device)], dim=1)  # (B,K+3,2)
    return torch.linalg.solve(system, rhs)  # (B,K+3,2): K kernel weights, then affine part


def tps_apply(params: torch.Tensor, src: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Evaluate fitted TPS at points (M,2): -> (B,M,2)."""
    m = points.shape[0]
    basis = torch.cat([_tps_kernel(points, src), torch.ones(m, 1, device=points.device),
                       points], dim=1)  # (M,K+3)
    return basis @ params  # (B,M,2)


def random_tps(batch: int, cfg: DataConfig, generator: torch.Generator, device=None):
    """Random warps: returns (params (B,K+3,2), control points (K,2)).

    The TPS maps reference coordinates to the source coordinates they sample from.
    """
    if cfg.tps_grid < 2:
        raise ValueError(f"data.tps_grid={cfg.tps_grid}: a TPS needs at least a 2x2 lattice")
    # Control points span corner to corner, [-1, 1] inclusive.
    lin = torch.linspace(-1, 1, cfg.tps_grid)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    src = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (K,2)
    shift = (torch.rand(batch, src.shape[0], 2, generator=generator) * 2 - 1) * cfg.tps_scale * 2
    params = tps_fit(src, src.unsqueeze(0) + shift)
    return params.to(device), src.to(device)


def color_shift(image: torch.Tensor, cfg: DataConfig, generator: torch.Generator) -> torch.Tensor:
    """a(I): (B,3,H,W) in [-1,1] plus one U[-j, j]/127.5 offset per channel, clipped [S 6.3].

    With cfg.hue_rotation = h > 0 [I], each image's hue is then rotated by one angle drawn
    from U[-h, h] degrees (after the offsets, so that the reference s(a(I)), made from the
    result, carries the same colours). The angles are drawn from `generator` only when h > 0:
    at h = 0 the random stream, and so every earlier run, is unchanged."""
    b = image.shape[0]
    offset = (torch.rand(b, 3, 1, 1, generator=generator) * 2 - 1) * (cfg.color_jitter / 127.5)
    out = (image + offset.to(image.device, image.dtype)).clamp(-1.0, 1.0)
    if cfg.hue_rotation > 0:
        degrees = (torch.rand(b, generator=generator) * 2 - 1) * cfg.hue_rotation  # (B,)
        out = rotate_hue(out, degrees.to(image.device))
    return out


def scoring_config(cfg: DataConfig) -> DataConfig:
    """The augmented-self pairs that scoring builds: the paper's a() and s() with a reference
    for every image. The zero references (no_reference_prob) and the hue turn (hue_rotation)
    are training levers: a run trained with them is scored on the same pairs as one without,
    so that their numbers compare (the hue probe turns hue itself, by known angles)."""
    return replace(cfg, no_reference_prob=0.0, hue_rotation=0.0)


def warp(image: torch.Tensor, params: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """s(): (B,C,H,W) sampled at T(x) for every output pixel x; outside the source -> white (+1)."""
    b, _, h, w = image.shape
    ys = (torch.arange(h, device=image.device, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=image.device, dtype=torch.float32) * 2 + 1) / w - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pix = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (H*W,2) pixel centres
    grid = tps_apply(params, src, pix).reshape(b, h, w, 2).to(image.dtype)  # (B,H,W,2) (x,y)
    # Sample (I - 1) with zero padding, then add 1 back: uncovered areas become white paper
    # (+1), and bilinear blending at the border fades to white, not to mid grey.
    out = F.grid_sample(image - 1.0, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out + 1.0


def correspondence(params: torch.Tensor, src: torch.Tensor, grid: int):
    """Sketch cell -> reference cell under T: returns corr (B,P) int64, mask (B,P) bool.

    For each sketch-grid cell centre p, the nearest T(x) over a FINE-times finer reference grid
    gives the x showing p's content; x is then quantised to its feature cell. Where even the
    nearest T(x) is over half a feature cell from p, that content left the reference: masked.
    """
    fine = grid * FINE
    dev = params.device
    p = cell_centres(grid, dev)  # (P,2)
    xf = cell_centres(fine, dev)  # (Q,2)
    tx = tps_apply(params, src, xf)  # (B,Q,2)
    dist = torch.cdist(p.unsqueeze(0).expand(tx.shape[0], -1, -1).contiguous(), tx)  # (B,P,Q)
    best, arg = dist.min(dim=2)  # (B,P)
    row, col = arg // fine // FINE, arg % fine // FINE
    corr = (row * grid + col).long()
    mask = best <= 1.0 / grid  # half a feature cell (cells are 2/grid wide)
    return corr, mask


def augmented_self(image: torch.Tensor, cfg: DataConfig, generator: torch.Generator,
                   stride: int = 16) -> dict:
    """image (B,3,H,W) in [-1,1] -> reference, target (B,3,H,W), corr/corr_mask (B,P), has_reference (B,).

    P = (H / stride)^2 cells of the encoders' feature grid: `stride` is their total stride (16 in
    Table 2; `model.total_stride(config.model)` for the model being trained).

    Random draws, always in this order from `generator` (a CPU generator): colour offsets,
    hue angles (only when cfg.hue_rotation > 0), TPS displacements, no-reference coin flips.
    With probability cfg.no_reference_prob a sample's reference is the paper's "zero-filled
    image" [S 6.5], read as an all-zero tensor (mid grey in [-1,1] units, matching the
    Generator's reference=None), with corr_mask all False.
    """
    b, _, h, w = image.shape
    if h != w:
        raise ValueError(f"augmented_self expects square images, got {h}x{w}")
    gf = feature_grid(h, stride)
    target = color_shift(image, cfg, generator)
    params, src = random_tps(b, cfg, generator, image.device)
    reference = warp(target, params, src)
    corr, mask = correspondence(params, src, gf)
    has_ref = torch.rand(b, generator=generator) >= cfg.no_reference_prob  # (B,)
    has_ref = has_ref.to(image.device)
    reference = torch.where(has_ref.view(b, 1, 1, 1), reference, torch.zeros_like(reference))
    mask = mask & has_ref.view(b, 1)
    return {"reference": reference, "target": target, "corr": corr, "corr_mask": mask,
            "has_reference": has_ref}

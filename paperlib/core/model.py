"""Generator (two encoders, aggregation, residual blocks, U-Net decoder) and PatchGAN discriminator.

Layout of the generator G(I_s, I_r) [P 3.3, S 6.3]:

    E_s(sketch) -> 10 layer outputs -> pooled to (H/16, W/16) and concatenated -> v_s (B, C, h, w)
    E_r(ref)    -> 10 layer outputs -> pooled and concatenated                 -> v_r (B, C, h, w)
    aggregation(v_s, v_r) -> v (SCFT [P Eq.2-4], the ablations "add"/"adain" [S Fig. 2], or
                               the opt-in stop-gradient attention "sga" [I])
    [I] optional 1x1 projection to model.res_channels (config.py) ->
    4 residual blocks (992 channels at width 1 by default) -> U-Net decoder with skips from E_s -> tanh RGB

C = sum of the encoder widths = 992 at width 1 [S Table 2, P Eq.1].

Choices the paper leaves open, marked as in config.py:
- [C] The residual blocks keep all C channels (as the public re-implementations do): conv-BN-ReLU-
  conv-BN plus identity, no activation after the sum.
- [I] Decoder: one stage per encoder resolution, coarse to fine. Each stage concatenates the
  current map with the last sketch-encoder output of that resolution (L10, L8, L6, L4, L2 at
  width 1: 256, 128, 64, 32, 16 channels), applies two 3x3 conv-BN-ReLU layers whose width is
  that skip's width, and (except at full resolution) upsamples x2 by nearest neighbour (nearest +
  conv avoids the checkerboard of transposed convs). A final 3x3 conv to RGB and tanh follow.
- [I] SCFT projections W_q, W_k, W_v are bias-free C x C matrices as written in Eq. 2 and the
  attention scale uses d = C.
- [I] "sga" (stop-gradient attention, Li et al. ECCV 2022, not in the paper): see
  StopGradAttention for its choices.
- [I] "add": v = v_s + v_r with no projection; the paper says the reference representation is
  "simply added" and E_r is trained end to end, so it can shape v_r itself.
- [I] "adain": channel statistics over the h*w positions, sigma = sqrt(var + 1e-5).
- [C] Discriminator: pix2pix 70x70 PatchGAN with BatchNorm, input cat(rgb, sketch), raw logits
  for the LSGAN objective [S].
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, total_stride  # total_stride is defined once, in config, and used from here
from .tapconv import TapConv2d, to_tap_layout

ADAIN_EPS = 1e-5


def scaled(channels: int, width: float) -> int:
    """Channel count of a Table 2 layer at a width multiplier (width 1 gives Table 2 exactly)."""
    return max(1, round(channels * width))


def init_weights(module: nn.Module, std: float) -> None:
    """Conv/linear weights ~ N(0, std) [S 6.3], biases zero; BN weights ~ N(1, 0.02) [C]."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------ encoder

class Encoder(nn.Module):
    """Table 2 encoder [S]: ten 3x3 convs, padding 1, LeakyReLU 0.2. E_s: 1 channel, E_r: 3."""

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        if len(cfg.encoder_channels) != len(cfg.encoder_strides):
            raise ValueError(f"encoder_channels ({len(cfg.encoder_channels)} entries) and "
                             f"encoder_strides ({len(cfg.encoder_strides)}) must have equal length")
        self.channels = [scaled(c, cfg.width) for c in cfg.encoder_channels]
        self.strides = [int(s) for s in cfg.encoder_strides]
        self.total_stride = total_stride(cfg)
        self.convs = nn.ModuleList()
        cin = in_channels
        for cout, stride in zip(self.channels, self.strides):
            self.convs.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1))
            cin = cout
        self.slope = cfg.leaky_slope
        if cfg.init not in ("normal", "kaiming"):
            raise ValueError(f"unknown model.init {cfg.init!r}; choose 'normal' or 'kaiming'")

    @property
    def out_channels(self) -> int:
        """Channels of the multi-layer feature (992 at width 1)."""
        return sum(self.channels)

    def check_size(self, h: int, w: int) -> None:
        s = self.total_stride
        if h % s or w % s:
            raise ValueError(f"input size {h}x{w} is not divisible by {s} (the encoder's total "
                             f"stride); resize or crop the images to a multiple of {s}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_size(x.shape[-2], x.shape[-1])
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.slope)
            feats.append(x)
        return feats

    def multi_layer(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """phi [P Eq.1]: average-pool every layer to the last layer's size, concat -> (B, C, h, w)."""
        h = feats[-1].shape[-2]
        pooled = []
        for f in feats:
            k = f.shape[-2] // h  # exact: sizes are multiples of the total stride
            pooled.append(F.avg_pool2d(f, k) if k > 1 else f)
        return torch.cat(pooled, dim=1)


# -------------------------------------------------------------------------------- aggregation

class SCFT(nn.Module):
    """Spatially corresponding feature transfer [P Eq.2-4]: v* = v_s + softmax(QK^T/sqrt(d)) V."""

    def __init__(self, channels: int):
        super().__init__()
        self.d = channels  # [I] d = C
        self.w_q = nn.Linear(channels, channels, bias=False)
        self.w_k = nn.Linear(channels, channels, bias=False)
        self.w_v = nn.Linear(channels, channels, bias=False)

    def forward(self, v_s: torch.Tensor, v_r: torch.Tensor, return_attention: bool = False):
        b, c, h, w = v_s.shape
        s = v_s.flatten(2).transpose(1, 2)  # (B, P_s, C), P index = row*w + col
        r = v_r.flatten(2).transpose(1, 2)  # (B, P_r, C)
        q, k, v = self.w_q(s), self.w_k(r), self.w_v(r)  # (B, P, d)
        aux = {"query": q, "key": k}
        if return_attention:
            attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.d), dim=-1)  # (B, P_s, P_r)
            out = attn @ v
            aux["attention"] = attn
        else:
            # Fused kernel; never materialises the P_s x P_r matrix.
            out = F.scaled_dot_product_attention(q, k, v)  # (B, P_s, d)
        out = out.transpose(1, 2).reshape(b, c, h, w)  # (B, C, h, w)
        return v_s + out.to(v_s.dtype), aux


class StopGradAttention(nn.Module):
    """Stop-gradient attention (Li et al., ECCV 2022, "Eliminating Gradient Conflict in
    Reference-based Line-Art Colorization", arXiv 2207.06095); an alternative to SCFT, not part
    of the reproduced paper.

    With X = v_s (B, P_s, C) and Y = v_r (B, P_r, C):
        A = softmax(X Y^T / sqrt(C)) over reference positions, computed without gradient,
        then each column of A divided by its sum (every reference position hands out a unit
        total); X' = leaky_relu(W_q X), Y' = leaky_relu(W_v Y) with learned C x C linear maps
        (with bias); Z = A Y' + X'. There is no query/key projection: the attention is built
        from the raw features.

    Choices of ours:
    - [I] logits scaled by 1/sqrt(C), as in our SCFT: the features are not normalised and a
      raw dot product of C-dimensional vectors saturates the softmax to one-hot rows.
    - [I] the LeakyReLU slope is the model's leaky_slope (0.2, Table 2 [S]).
    - [I] W_q and W_v carry a bias (nn.Linear's default); the method's description does not
      say, and unlike SCFT's they are followed by a non-linearity, where a shift matters.
    - [I] aux["query"] and aux["key"] are the raw flattened v_s and v_r (not detached), so the
      triplet loss [P Eq. 5], whose S(q, k) = q . k / sqrt(C) is exactly the logit above,
      supervises the features the attention is computed from: that is the only way a
      correspondence loss reaches the encoders here, since A itself carries no gradient.
      aux["attention"] (with return_attention=True) is the detached, column-normalised A.
    """

    COLUMN_EPS = 1e-9  # guards the column normalisation where a column's softmax mass underflows

    def __init__(self, channels: int, leaky_slope: float = 0.2):
        super().__init__()
        self.d = channels
        self.slope = leaky_slope
        self.w_q = nn.Linear(channels, channels)
        self.w_v = nn.Linear(channels, channels)

    def forward(self, v_s: torch.Tensor, v_r: torch.Tensor, return_attention: bool = False):
        b, c, h, w = v_s.shape
        s = v_s.flatten(2).transpose(1, 2)  # (B, P_s, C), P index = row*w + col
        r = v_r.flatten(2).transpose(1, 2)  # (B, P_r, C)
        with torch.no_grad():
            logits = s @ r.transpose(1, 2) / math.sqrt(self.d)  # (B, P_s, P_r)
            attn = torch.softmax(logits.float(), dim=-1)  # rows sum to 1
            attn = attn / (attn.sum(dim=-2, keepdim=True) + self.COLUMN_EPS)  # columns sum to 1
        x = F.leaky_relu(self.w_q(s), self.slope)  # (B, P_s, C)
        y = F.leaky_relu(self.w_v(r), self.slope)  # (B, P_r, C)
        z = attn.to(y.dtype) @ y + x  # (B, P_s, C)
        z = z.transpose(1, 2).reshape(b, c, h, w)  # (B, C, h, w)
        aux = {"query": s, "key": r}
        if return_attention:
            aux["attention"] = attn
        return z.to(v_s.dtype), aux


class AddAggregation(nn.Module):
    """Ablation (a) [S Fig. 2a]: the reference representation added to the content features."""

    def forward(self, v_s, v_r, return_attention: bool = False):
        return v_s + v_r, {}


class AdaINAggregation(nn.Module):
    """Ablation (b) [S Fig. 2b]: sigma(v_r) (v_s - mu(v_s)) / sigma(v_s) + mu(v_r), per channel."""

    def forward(self, v_s, v_r, return_attention: bool = False):
        var_s, mu_s = torch.var_mean(v_s, dim=(2, 3), keepdim=True, correction=0)
        var_r, mu_r = torch.var_mean(v_r, dim=(2, 3), keepdim=True, correction=0)
        normed = (v_s - mu_s) * torch.rsqrt(var_s + ADAIN_EPS)
        return normed * torch.sqrt(var_r + ADAIN_EPS) + mu_r, {}


def make_aggregation(name: str, channels: int, leaky_slope: float = 0.2) -> nn.Module:
    """The aggregation module by model.aggregation; leaky_slope is used by "sga" only."""
    if name == "scft":
        return SCFT(channels)
    if name == "sga":
        return StopGradAttention(channels, leaky_slope)
    if name == "add":
        return AddAggregation()
    if name == "adain":
        return AdaINAggregation()
    raise ValueError(f"unknown model.aggregation {name!r}; choose 'scft', 'sga', 'add' or "
                     f"'adain'")


# ---------------------------------------------------------------------- residual and decoder

def conv_bn_relu(cin: int, cout: int, conv: nn.Conv2d | None = None) -> nn.Sequential:
    # No conv bias: the BN shift makes it redundant.
    conv = conv if conv is not None else nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """[S 6.3] kernel 3, stride 1, BN after each conv, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, TapConv2d(channels, channels)),
            TapConv2d(channels, channels), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class Decoder(nn.Module):
    """[I] U-Net decoder: per encoder resolution, concat the sketch skip, two conv-BN-ReLU, up x2."""

    def __init__(self, in_channels: int, skip_channels: list[int]):
        super().__init__()
        self.stages = nn.ModuleList()
        cin = in_channels
        for skip in skip_channels:  # coarse to fine
            self.stages.append(nn.Sequential(conv_bn_relu(cin + skip, skip), conv_bn_relu(skip, skip)))
            cin = skip
        self.to_rgb = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, x, skips: list[torch.Tensor]):
        for i, (stage, skip) in enumerate(zip(self.stages, skips)):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = stage(torch.cat([x, skip.to(x.dtype)], dim=1))
        return torch.tanh(self.to_rgb(x))


# ---------------------------------------------------------------------------------- generator

class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_s = Encoder(cfg, 1)
        self.enc_r = Encoder(cfg, 3)
        c = self.enc_s.out_channels
        self.aggregation = make_aggregation(cfg.aggregation, c, cfg.leaky_slope)
        r = scaled(cfg.res_channels, cfg.width) if cfg.res_channels else c
        if r > c:
            raise ValueError(f"model.res_channels {cfg.res_channels} is {r} channels at width "
                             f"{cfg.width}, more than the {c} of the aggregated feature")
        # [I] a projection to fewer channels before the residual blocks (model.res_channels)
        self.project = (nn.Sequential(nn.Conv2d(c, r, 1, bias=False), nn.BatchNorm2d(r))
                        if r < c else nn.Identity())
        self.res_blocks = nn.Sequential(*[ResBlock(r) for _ in range(cfg.n_res_blocks)])
        # Skips: the last sketch-encoder layer of each resolution, coarse to fine.
        self.skip_index = self._last_layer_per_resolution(self.enc_s.strides)[::-1]
        if self.enc_s.strides[0] != 1:
            raise ValueError("encoder_strides[0] must be 1 so a skip exists at input resolution")
        if any(s not in (1, 2) for s in self.enc_s.strides):
            raise ValueError(f"encoder_strides {self.enc_s.strides} must be 1 or 2 (the decoder "
                             f"upsamples by 2 per stage)")
        self.decoder = Decoder(r, [self.enc_s.channels[i] for i in self.skip_index])
        init_weights(self, cfg.init_std)
        if cfg.init == "kaiming":
            # At N(0, 0.02) each unnormalised encoder layer shrinks its input ~5-10x, so the
            # deep layers of E_r carry (and receive) almost nothing [I].
            for enc in (self.enc_s, self.enc_r):
                for conv in enc.convs:
                    nn.init.kaiming_normal_(conv.weight, a=cfg.leaky_slope, nonlinearity="leaky_relu")
        to_tap_layout(self)

    @staticmethod
    def _last_layer_per_resolution(strides) -> list[int]:
        # Layer i is the last of its resolution when the next layer downsamples (or it is last).
        n = len(strides)
        return [i for i in range(n) if i == n - 1 or strides[i + 1] > 1]

    def forward(self, sketch: torch.Tensor, reference: torch.Tensor | None = None,
                return_attention: bool = False):
        if sketch.dim() != 4 or sketch.shape[1] != 1:
            raise ValueError(f"sketch must be (B, 1, H, W), got {tuple(sketch.shape)}")
        b, _, h, w = sketch.shape
        if reference is None:
            reference = sketch.new_zeros(b, 3, h, w)
        elif reference.dim() != 4 or reference.shape[1] != 3 or reference.shape[0] != b \
                or reference.shape[-2:] != sketch.shape[-2:]:
            raise ValueError(f"reference must be (B, 3, H, W) = ({b}, 3, {h}, {w}) to match the "
                             f"sketch, got {tuple(reference.shape)}")
        feats_s = self.enc_s(sketch)
        feats_r = self.enc_r(reference)
        v_s = self.enc_s.multi_layer(feats_s)  # (B, C, H/16, W/16)
        v_r = self.enc_r.multi_layer(feats_r)
        v, aux = self.aggregation(v_s, v_r, return_attention=return_attention)
        v = self.res_blocks(self.project(v))  # (B, C or res_channels, h, w)
        rgb = self.decoder(v, [feats_s[i] for i in self.skip_index])
        return rgb, aux


# ------------------------------------------------------------------------------ discriminator

class Discriminator(nn.Module):
    """[S] PatchGAN, [C] pix2pix layout: d_layers strided 4x4 convs, one stride-1, then 1 logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ndf = scaled(cfg.d_ndf, cfg.width)
        slope = cfg.leaky_slope
        layers: list[nn.Module] = [nn.Conv2d(4, ndf, 4, stride=2, padding=1), nn.LeakyReLU(slope, True)]
        mult = 1
        for n in range(1, cfg.d_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < cfg.d_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(slope, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))  # raw logits (LSGAN)
        self.net = nn.Sequential(*layers)
        init_weights(self, cfg.init_std)

    def forward(self, rgb: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
        if rgb.shape[1] != 3 or sketch.shape[1] != 1 or rgb.shape[-2:] != sketch.shape[-2:]:
            raise ValueError(f"discriminator needs rgb (B, 3, H, W) and sketch (B, 1, H, W) of one "
                             f"size, got {tuple(rgb.shape)} and {tuple(sketch.shape)}")
        return self.net(torch.cat([rgb, sketch.to(rgb.dtype)], dim=1))  # (B, 1, h, w)

"""The objective of the paper [P Eq. 5-10]: triplet, adversarial (LSGAN), reconstruction,
perceptual and style losses, and the "L1-loss" correspondence ablation [S Fig. 17]; apart from
it, our opt-in terms [I] (CIELAB a*b*, per-region colour), each off unless its weight is set.

Pure functions of tensors; weights are named as in Eq. 10 (LossConfig.lambda_*). paper_loss is
Eq. 10, opt_in_loss our terms, generator_loss (what training minimises) the two together.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .color import srgb_to_lab


def _zero(like: torch.Tensor) -> torch.Tensor:
    # A zero that keeps `like` in the autograd graph, so backward() never sees a leaf-less loss.
    return like.sum().float() * 0.0


# ------------------------------------------------------------------- image and GAN terms

def reconstruction(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_rec = || G(I_s, I_r) - I_gt ||_1, mean over all elements [P Eq. 6]."""
    return F.l1_loss(fake.float(), target.float())


def chroma_ab(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[I] mean |delta a*| + |delta b*| / 100 between two (B, 3, H, W) images in [-1, 1], in
    CIELAB (core.color, float32): one unit of perceived chroma costs the same along red-green
    and yellow-blue. Not in the paper; loss.lambda_ab switches it on."""
    ab_fake = srgb_to_lab((fake + 1.0) / 2.0)[:, 1:]  # (B, 2, H, W)
    ab_target = srgb_to_lab((target.detach() + 1.0) / 2.0)[:, 1:]
    return (ab_fake - ab_target).abs().mean() / 100.0


def region_colour(fake: torch.Tensor, target: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """[I] mean over the closed sketch regions of a batch, each counting once, of the L1
    distance between the output's and the target's mean CIELAB colour in the region (L*, a*, b*
    / 100). fake, target (B, 3, H, W) in [-1, 1]; regions (B, H, W) int64 as
    core.sketch.region_labels gives them (0: no region). Zero, in the graph, with no region.
    Not in the paper; loss.lambda_region switches it on."""
    if regions.shape != (fake.shape[0], *fake.shape[-2:]):
        raise ValueError(f"regions {tuple(regions.shape)} must be (B, H, W) = "
                         f"{(fake.shape[0], *fake.shape[-2:])}")
    b = fake.shape[0]
    per_image = regions.flatten(1).amax(1)  # (B,) regions in each image
    n = int(per_image.sum())
    if n == 0:
        return _zero(fake)
    # one id per (image, region) over the batch; id 0 collects every pixel outside a region
    offset = torch.cumsum(per_image, 0) - per_image  # (B,)
    ids = torch.where(regions > 0, regions + offset.view(b, 1, 1), torch.zeros_like(regions))
    ids = ids.flatten()  # (B*H*W,)
    count = torch.zeros(n + 1, device=fake.device).index_add_(
        0, ids, torch.ones_like(ids, dtype=torch.float32))[1:]  # (n,)

    def means(img):
        lab = srgb_to_lab((img.float() + 1.0) / 2.0).permute(0, 2, 3, 1).reshape(-1, 3)  # (B*H*W, 3)
        sums = torch.zeros(n + 1, 3, device=fake.device).index_add_(0, ids, lab)[1:]  # (n, 3)
        return sums / count.unsqueeze(1)

    return (means(fake) - means(target.detach())).abs().mean() / 100.0


def lsgan_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv of Eq. 7 [P] as the LSGAN generator loss [S]: E[(D(fake) - 1)^2]."""
    return ((fake_logits.float() - 1.0) ** 2).mean()


# -------------------------------------------------------------------- VGG feature terms

def perceptual(feats_fake: dict, feats_real: dict) -> torch.Tensor:
    """L_perc = sum over layers of the mean L1 distance of the activations [P Eq. 8].

    Written as (a - b).abs().mean() rather than F.l1_loss: autocast would cast both full-size
    feature maps to float32 first (the largest copies of a bf16 step); the mean still
    accumulates in float32."""
    terms = [(feats_fake[k] - feats_real[k]).abs().mean().float() for k in feats_fake]
    return torch.stack(terms).sum()


def gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix (B, C, C) of features (B, C, H, W), divided by C*H*W; returned in float32.

    The product runs in the features' dtype: bf16 matrix units accumulate the sum over H*W in
    float32 and round only the C x C result, whereas casting the full (C, H*W) map to float32
    first costs more than the product itself on a CPU."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)  # (B, C, HW)
    return (torch.bmm(f, f.transpose(1, 2)).float() / (c * h * w))


def style(feats_fake: dict, feats_real: dict) -> torch.Tensor:
    """L_style = sum over layers of the mean L1 distance of the Gram matrices [P Eq. 9]."""
    terms = [F.l1_loss(gram(feats_fake[k]), gram(feats_real[k])) for k in feats_fake]
    return torch.stack(terms).sum()


# --------------------------------------------------------------------- correspondence terms

def similarity(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """S(q, k) = q . k / sqrt(d), the scaled dot product of the SCFT attention [P Eq. 3, 5]."""
    return (query.float() * key.float()).sum(-1) / math.sqrt(query.shape[-1])


def sample_negatives(corr: torch.Tensor, n_ref: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """For each position, a reference index drawn uniformly among those != corr (B, P) int64."""
    if n_ref < 2:
        raise ValueError(f"the triplet loss needs >= 2 reference positions, got {n_ref}")
    device = generator.device if generator is not None else corr.device
    r = torch.randint(0, n_ref - 1, corr.shape, generator=generator, device=device).to(corr.device)
    return r + (r >= corr).long()  # skip over the positive: uniform on the other n_ref-1 positions


def triplet(query: torch.Tensor, key: torch.Tensor, corr: torch.Tensor, mask: torch.Tensor,
            margin: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Similarity-based triplet loss [P Eq. 5]: mean over valid sketch positions i of
    max(0, -S(q_i, k_corr[i]) + S(q_i, k_neg) + margin).

    query (B, P, d) from the sketch, key (B, P_ref, d) from the reference, corr (B, P) int64,
    mask (B, P) bool. Eq. 5 has one positive and one negative per query, so one negative is
    sampled per position, uniformly among the other reference positions, from `generator`.
    """
    if not mask.any():
        return _zero(query) + _zero(key)
    b, p, d = query.shape
    neg = sample_negatives(corr, key.shape[1], generator)  # (B, P)
    k_pos = key.gather(1, corr.unsqueeze(-1).expand(b, p, d))  # (B, P, d)
    k_neg = key.gather(1, neg.unsqueeze(-1).expand(b, p, d))  # (B, P, d)
    hinge = F.relu(similarity(query, k_neg) - similarity(query, k_pos) + margin)  # (B, P)
    return hinge[mask].mean()


def attention_l1(attention: torch.Tensor, corr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The "L1-loss" of the ablation [S Fig. 17], in our reading [I]: the L1 distance between
    each attention row (B, P, P_ref) and the one-hot ground-truth correspondence, summed over
    reference positions and averaged over valid sketch positions. Range [0, 2]."""
    if not mask.any():
        return _zero(attention)
    onehot = F.one_hot(corr, attention.shape[-1]).float()  # (B, P, P_ref)
    dist = (attention.float() - onehot).abs().sum(-1)  # (B, P)
    return dist[mask].mean()


# ----------------------------------------------------------------------------- totals

# The keys of each objective's terms, in the order their weighted sum is taken. They are written
# into stats.jsonl with a "g_" prefix, which the notebooks and older runs' logs read.
PAPER_TERMS = ("rec", "adv", "perc", "style", "tr")
OPT_IN_TERMS = ("ab", "region")


def paper_loss(cfg, *, fake, target, d_fake, aux, corr, corr_mask, perceptual_net,
               generator=None):
    """The paper's generator objective, Eq. 10: lambda_rec L_rec + lambda_adv L_adv +
    lambda_perc L_perc + lambda_style L_style + lambda_tr L_tr.

    Returns (total, {"rec", "adv", "perc", "style", "tr"}) with the terms detached. `aux` is the
    generator's aux dict; without a "query" (add/AdaIN models) or with correspondence_loss
    "none" the tr term is 0. The "l1" variant [S Fig. 17] needs aux["attention"]."""
    terms, weights = _paper_terms(cfg, fake, target, d_fake, aux, corr, corr_mask,
                                  perceptual_net, generator)
    return _weighted_sum(terms, weights), _detached(terms)


def opt_in_loss(cfg, *, fake, target, regions=None):
    """Our terms beyond the paper [I], each off at weight 0: "ab" (chroma_ab, loss.lambda_ab)
    and "region" (region_colour of `regions`, loss.lambda_region).

    Returns (total, terms detached) with only the terms that are on; with none on, the total is
    a zero in the graph and the dict is empty, so the paper's runs log no term they did not use."""
    terms, weights = _opt_in_terms(cfg, fake, target, regions)
    total = _weighted_sum(terms, weights) if weights else _zero(fake)
    return total, _detached(terms)


def generator_loss(cfg, *, fake, target, d_fake, aux, corr, corr_mask, perceptual_net,
                   generator=None, regions=None):
    """What the training step minimises: paper_loss plus opt_in_loss, as one (total, terms).

    The total is one left-to-right sum over the paper's weighted terms and then ours, so it is
    bit for bit the sum the step has always taken (adding the two totals would round in another
    order when two of our terms are on)."""
    terms, weights = _paper_terms(cfg, fake, target, d_fake, aux, corr, corr_mask,
                                  perceptual_net, generator)
    ours, our_weights = _opt_in_terms(cfg, fake, target, regions)
    terms, weights = {**terms, **ours}, {**weights, **our_weights}
    return _weighted_sum(terms, weights), _detached(terms)


def _weighted_sum(terms: dict, weights: dict) -> torch.Tensor:
    return sum(weights[k] * terms[k] for k in weights)


def _detached(terms: dict) -> dict:
    return {k: v.detach() for k, v in terms.items()}


def _paper_terms(cfg, fake, target, d_fake, aux, corr, corr_mask, perceptual_net, generator):
    """(terms, weights) of Eq. 10, both keyed by PAPER_TERMS, terms still in the graph."""
    terms = {"rec": reconstruction(fake, target),
             "adv": lsgan_g(d_fake) if d_fake is not None else _zero(fake)}
    if cfg.lambda_perc or cfg.lambda_style:
        if perceptual_net is None:
            raise ValueError("loss.lambda_perc / loss.lambda_style are non-zero but no "
                             "perceptual network was given")
        feats_fake = perceptual_net(fake)
        with torch.no_grad():
            feats_real = perceptual_net(target.detach())
        terms["perc"] = perceptual(feats_fake, feats_real)
        terms["style"] = style(feats_fake, feats_real)
    else:
        terms["perc"] = terms["style"] = _zero(fake)
    terms["tr"] = _correspondence(cfg, aux or {}, corr, corr_mask, generator, fake)
    weights = {"rec": cfg.lambda_rec, "adv": cfg.lambda_adv, "perc": cfg.lambda_perc,
               "style": cfg.lambda_style, "tr": cfg.lambda_tr}
    return terms, weights


def _opt_in_terms(cfg, fake, target, regions):
    """(terms, weights) of our terms that are on, in OPT_IN_TERMS order. A term that is off is
    left out rather than logged as 0, so the paper's runs log what they did."""
    terms, weights = {}, {}
    if cfg.lambda_ab > 0:
        terms["ab"], weights["ab"] = chroma_ab(fake, target), cfg.lambda_ab
    if cfg.lambda_region > 0:
        if regions is None:
            raise ValueError("loss.lambda_region > 0 needs the sketch's region labels "
                             "(core.sketch.region_labels of the batch's sketches)")
        terms["region"], weights["region"] = region_colour(fake, target, regions), cfg.lambda_region
    return terms, weights


def _correspondence(cfg, aux, corr, corr_mask, generator, fake) -> torch.Tensor:
    kind = cfg.correspondence_loss
    if kind not in ("triplet", "l1", "none"):
        raise ValueError(f"unknown loss.correspondence_loss {kind!r}; "
                         f"choose 'triplet', 'l1' or 'none'")
    if kind == "none" or "query" not in aux:
        return fake.new_zeros((), dtype=torch.float32)
    if corr is None or corr_mask is None:
        raise ValueError(f"loss.correspondence_loss={kind!r} needs corr and corr_mask")
    if corr.shape[1] != aux["query"].shape[1]:
        raise ValueError(f"the correspondence has {corr.shape[1]} cells but the encoders' grid "
                         f"{aux['query'].shape[1]}: build it with augmented_self(..., "
                         f"stride=model.total_stride(config.model))")
    if kind == "triplet":
        return triplet(aux["query"], aux["key"], corr, corr_mask, cfg.margin, generator)
    if "attention" not in aux:
        raise ValueError("loss.correspondence_loss='l1' needs the attention map: call the "
                         "generator with return_attention=True")
    return attention_l1(aux["attention"], corr, corr_mask)


def discriminator_loss(cfg, d_real, d_fake):
    """LSGAN discriminator objective; returns (total, {"d_real", "d_fake"}) detached terms."""
    real = ((d_real.float() - 1.0) ** 2).mean()
    fake = (d_fake.float() ** 2).mean()
    return 0.5 * (real + fake), {"d_real": real.detach(), "d_fake": fake.detach()}

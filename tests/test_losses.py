"""Losses on hand-made tensors with known answers."""
import dataclasses
import math

import pytest
import torch

from paperlib.core import losses
from paperlib.config import LossConfig


def test_reconstruction_is_l1_mean():
    fake = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert losses.reconstruction(fake, target).item() == pytest.approx((1 + 0 + 2 + 2) / 4)


def test_lsgan_values():
    real = torch.tensor([1.0, 0.0])  # (r-1)^2: 0, 1 -> mean 0.5
    fake = torch.tensor([0.0, 2.0])  # f^2: 0, 4 -> mean 2
    assert losses.lsgan_g(fake).item() == pytest.approx((1 + 1) / 2)
    total, terms = losses.discriminator_loss(LossConfig(), real, fake)
    assert total.item() == pytest.approx(1.25)
    assert terms["d_real"].item() == pytest.approx(0.5) and terms["d_fake"].item() == pytest.approx(2)


def test_gram_known_tensor():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 1.0]).view(1, 2, 1, 3)  # C=2, H=1, W=3
    g = losses.gram(x)
    expected = torch.tensor([[14.0, 7.0], [7.0, 17.0]]) / (2 * 1 * 3)
    assert torch.allclose(g[0], expected)


def test_gram_float32_under_bf16_autocast():
    x = torch.randn(2, 4, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = losses.gram(x)
    assert g.dtype == torch.float32


def test_style_and_perceptual_zero_for_equal_features_positive_otherwise():
    a = {"relu1_1": torch.randn(2, 4, 5, 5), "relu2_1": torch.randn(2, 8, 3, 3)}
    assert losses.style(a, a).item() == 0.0
    assert losses.perceptual(a, a).item() == 0.0
    b = {k: v + 1.0 for k, v in a.items()}
    assert losses.perceptual(a, b).item() == pytest.approx(2.0)  # 1 per layer, 2 layers
    assert losses.style(a, b).item() > 0


def _qk():
    # 2 sketch positions, 3 reference positions, d = 4, so S = q.k / 2
    query = torch.tensor([[[2.0, 0, 0, 0], [0, 2.0, 0, 0]]])
    key = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.5, 0.5, 0, 0]]])
    return query, key


def test_triplet_zero_when_positive_wins_by_more_than_margin():
    query, key = _qk()
    query = query * 100  # S(q, k+) = 100, S(q, k-) <= 50
    corr = torch.tensor([[0, 1]])
    mask = torch.tensor([[True, True]])
    assert losses.triplet(query, key, corr, mask, margin=12.0).item() == 0.0


def test_triplet_equals_hand_computed_hinge():
    query, key = _qk()
    corr = torch.tensor([[0, 1]])
    mask = torch.tensor([[True, True]])
    gen = torch.Generator().manual_seed(3)
    neg = losses.sample_negatives(corr, 3, torch.Generator().manual_seed(3))
    assert (neg != corr).all()
    s = lambda q, k: float(q @ k) / math.sqrt(4)  # noqa: E731
    hinge = [max(0.0, -s(query[0, i], key[0, corr[0, i]]) + s(query[0, i], key[0, neg[0, i]]) + 12)
             for i in range(2)]
    got = losses.triplet(query, key, corr, mask, margin=12.0, generator=gen)
    assert got.item() == pytest.approx(sum(hinge) / 2)


def test_triplet_negatives_uniform_and_never_positive():
    corr = torch.full((1, 6000), 2)
    neg = losses.sample_negatives(corr, 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(neg.flatten(), minlength=4)
    assert counts[2] == 0
    assert (counts[[0, 1, 3]] > 1800).all()  # about 2000 each


def test_triplet_gradient_step_raises_positive_similarity():
    torch.manual_seed(0)
    query = torch.randn(1, 5, 8, requires_grad=True)
    key = torch.randn(1, 6, 8)
    corr = torch.tensor([[0, 1, 2, 3, 4]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    pos = key[0, corr[0]]  # (5, 8)
    before = losses.similarity(query[0], pos).detach()
    loss = losses.triplet(query, key, corr, mask, margin=12.0, generator=torch.Generator())
    loss.backward()
    with torch.no_grad():
        after = losses.similarity(query[0] - 0.1 * query.grad[0], pos)
    assert (after > before).all()


def test_triplet_masked_positions_contribute_nothing():
    query, key = _qk()
    corr = torch.tensor([[0, 1]])
    only_first = torch.tensor([[True, False]])
    base = losses.triplet(query, key, corr, only_first, 12.0, torch.Generator().manual_seed(1))
    garbage = query.clone()
    garbage[0, 1] = 1e3  # a wild masked query must not change anything
    same = losses.triplet(garbage, key, corr, only_first, 12.0, torch.Generator().manual_seed(1))
    assert same.item() == pytest.approx(base.item())
    q = query.clone().requires_grad_(True)
    none = losses.triplet(q, key, corr, torch.zeros(1, 2, dtype=torch.bool), 12.0)
    none.backward()
    assert none.item() == 0.0 and q.grad is not None and (q.grad == 0).all()


def test_attention_l1_known_values():
    corr = torch.tensor([[0, 2]])
    mask = torch.tensor([[True, True]])
    exact = torch.nn.functional.one_hot(corr, 3).float()
    assert losses.attention_l1(exact, corr, mask).item() == 0.0
    wrong = torch.nn.functional.one_hot(torch.tensor([[1, 0]]), 3).float()
    assert losses.attention_l1(wrong, corr, mask).item() == pytest.approx(2.0)
    # a masked wrong row counts for nothing
    mixed = torch.stack([exact[0, 0], wrong[0, 1]]).unsqueeze(0)
    assert losses.attention_l1(mixed, corr, torch.tensor([[True, False]])).item() == 0.0


class _MeanFeatures(torch.nn.Module):
    """A stand-in perceptual network: one 'layer', the input itself."""

    def forward(self, x):
        return {"relu1_1": x}


def _generator_inputs(requires_grad=True):
    torch.manual_seed(0)
    fake = torch.rand(2, 3, 8, 8, requires_grad=requires_grad)
    target = torch.rand(2, 3, 8, 8)
    query = torch.randn(2, 4, 6, requires_grad=True)
    key = torch.randn(2, 4, 6)
    attention = torch.softmax(torch.randn(2, 4, 4), -1)
    corr = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    return fake, target, dict(query=query, key=key, attention=attention), corr, mask


def test_generator_loss_total_is_weighted_sum():
    cfg = LossConfig()
    fake, target, aux, corr, mask = _generator_inputs()
    d_fake = torch.full((2, 1, 2, 2), 0.5)
    total, terms = losses.generator_loss(cfg, fake=fake, target=target, d_fake=d_fake, aux=aux,
                                         corr=corr, corr_mask=mask, perceptual_net=_MeanFeatures(),
                                         generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"rec", "adv", "perc", "style", "tr"}
    assert terms["adv"].item() == pytest.approx(0.25)
    assert terms["perc"].item() == pytest.approx(terms["rec"].item())  # identity features
    expected = (cfg.lambda_rec * terms["rec"] + cfg.lambda_adv * terms["adv"]
                + cfg.lambda_perc * terms["perc"] + cfg.lambda_style * terms["style"]
                + cfg.lambda_tr * terms["tr"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["tr"].item() > 0
    total.backward()
    assert fake.grad is not None and aux["query"].grad is not None


def test_generator_loss_correspondence_variants():
    fake, target, aux, corr, mask = _generator_inputs()
    common = dict(fake=fake, target=target, d_fake=torch.zeros(2, 1, 2, 2), corr=corr,
                  corr_mask=mask, perceptual_net=_MeanFeatures())
    for kind in ("none", "triplet"):
        _, terms = losses.generator_loss(LossConfig(correspondence_loss=kind), aux={}, **common)
        assert terms["tr"].item() == 0.0  # no query: an add / AdaIN model
    _, terms = losses.generator_loss(LossConfig(correspondence_loss="none"), aux=aux, **common)
    assert terms["tr"].item() == 0.0
    _, terms = losses.generator_loss(LossConfig(correspondence_loss="l1"), aux=aux, **common)
    assert terms["tr"].item() == pytest.approx(
        losses.attention_l1(aux["attention"], corr, mask).item())
    no_attention = {k: v for k, v in aux.items() if k != "attention"}
    with pytest.raises(ValueError, match="return_attention"):
        losses.generator_loss(LossConfig(correspondence_loss="l1"), aux=no_attention, **common)


def test_generator_loss_target_features_carry_no_graph():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.is_grad_enabled())
            return {"relu1_1": x}

    fake, target, aux, corr, mask = _generator_inputs()
    losses.generator_loss(LossConfig(), fake=fake, target=target.requires_grad_(True),
                          d_fake=torch.zeros(1), aux=aux, corr=corr, corr_mask=mask,
                          perceptual_net=Recorder())
    assert seen == [True, False]


def test_the_chroma_term_weighs_hue_not_lightness():
    from paperlib.core.color import srgb_to_lab

    grey = torch.full((1, 3, 4, 4), 0.2)
    assert losses.chroma_ab(grey, grey) == 0
    # a lighter grey: lightness only, and greys have a* = b* = 0, so it costs nothing
    assert losses.chroma_ab(torch.full_like(grey, 0.6), grey) == pytest.approx(0, abs=1e-4)
    red = torch.tensor([0.8, -0.6, -0.6]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    lab = srgb_to_lab((red + 1) / 2)[0, :, 0, 0]
    expected = (lab[1].abs() + lab[2].abs()) / 2 / 100  # mean over the two channels
    assert losses.chroma_ab(red, grey) == pytest.approx(float(expected), rel=1e-4)
    fake = red.clone().requires_grad_(True)
    losses.chroma_ab(fake, grey).backward()
    assert fake.grad.abs().sum() > 0


def test_the_chroma_term_enters_the_total_only_when_switched_on():
    from paperlib.config import LossConfig

    g = torch.Generator().manual_seed(0)
    fake, target = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    common = dict(fake=fake, target=target, d_fake=None, aux={}, corr=None, corr_mask=None,
                  perceptual_net=None)
    base = LossConfig(lambda_perc=0, lambda_style=0, correspondence_loss="none")
    total_off, terms_off = losses.generator_loss(base, **common)
    assert "ab" not in terms_off
    total_on, terms_on = losses.generator_loss(dataclasses.replace(base, lambda_ab=5.0), **common)
    assert terms_on["ab"] == pytest.approx(float(losses.chroma_ab(fake, target)))
    assert float(total_on - total_off) == pytest.approx(5.0 * float(terms_on["ab"]), rel=1e-5)


def _both_objectives(cfg, seed=0):
    """paper_loss, opt_in_loss and generator_loss of one input, each with the same negatives."""
    fake, target, aux, corr, mask = _generator_inputs()
    fake, target = fake * 2 - 1, target * 2 - 1  # images in [-1, 1], as the CIELAB terms take
    regions = torch.zeros(2, 8, 8, dtype=torch.long)
    regions[:, :4], regions[:, 4:6] = 1, 2  # two regions per image, two rows outside any
    common = dict(fake=fake, target=target, d_fake=torch.full((2, 1, 2, 2), 0.5), aux=aux,
                  corr=corr, corr_mask=mask, perceptual_net=_MeanFeatures())
    paper = losses.paper_loss(cfg, **common, generator=torch.Generator().manual_seed(seed))
    ours = losses.opt_in_loss(cfg, fake=fake, target=target, regions=regions)
    both = losses.generator_loss(cfg, **common, generator=torch.Generator().manual_seed(seed),
                                 regions=regions)
    return paper, ours, both


def test_the_papers_objective_has_only_eq10s_terms_and_ours_only_ours():
    on = LossConfig(lambda_ab=90.0, lambda_region=30.0)
    (p_total, p_terms), (o_total, o_terms), (total, terms) = _both_objectives(on)
    assert tuple(p_terms) == losses.PAPER_TERMS == ("rec", "adv", "perc", "style", "tr")
    assert tuple(o_terms) == losses.OPT_IN_TERMS == ("ab", "region")
    assert not set(losses.PAPER_TERMS) & set(losses.OPT_IN_TERMS)
    # the step logs both sets under their old names, and its total is the two objectives' sum
    assert tuple(terms) == losses.PAPER_TERMS + losses.OPT_IN_TERMS
    assert all(torch.equal(terms[k], v) for k, v in {**p_terms, **o_terms}.items())
    assert o_total.item() == pytest.approx(90.0 * o_terms["ab"].item() + 30.0 * o_terms["region"].item())
    assert o_total.item() > 0
    assert total.item() == pytest.approx(p_total.item() + o_total.item(), rel=1e-6)


def test_with_our_terms_off_the_total_is_the_papers_exactly():
    (p_total, p_terms), (o_total, o_terms), (total, terms) = _both_objectives(LossConfig())
    assert o_terms == {} and o_total.item() == 0.0
    assert torch.equal(total, p_total)  # bit for bit, not approximately
    assert terms.keys() == p_terms.keys() and all(torch.equal(terms[k], p_terms[k]) for k in terms)

import torch

from paperlib.evaluate import derangement
from paperlib.metrics import attention_hit_rate


def test_derangement_has_no_fixed_point_and_is_a_permutation():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n))
        assert not (p == torch.arange(n)).any()


def test_attention_hit_rate_counts_only_valid_positions():
    corr = torch.tensor([[1, 0, 3, 2]])
    att = torch.nn.functional.one_hot(corr, 4).float()
    mask = torch.tensor([[True, True, True, False]])
    assert attention_hit_rate(att, corr, mask) == 1.0
    att[0, 0] = torch.tensor([1.0, 0, 0, 0])  # wrong for position 0
    assert abs(attention_hit_rate(att, corr, mask) - 2 / 3) < 1e-6

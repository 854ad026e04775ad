import math

import pytest

from rewind.stats import Summary, beats, safe_sparsity, summarize, winner


def test_summarize_uses_the_sample_standard_deviation():
    summary = summarize([0.90, 0.92, 0.94])
    assert summary.mean == pytest.approx(0.92)
    assert summary.std == pytest.approx(0.02)
    assert summary.n == 3
    assert summarize([0.5]) == Summary(0.5, 0.0, 1)
    with pytest.raises(ValueError):
        summarize([])


def test_safe_sparsity_is_the_highest_within_one_dense_std():
    dense = Summary(0.95, 0.01, 3)
    points = [
        (0.5, Summary(0.96, 0.01, 3)),
        (0.9, Summary(0.941, 0.02, 3)),
        (0.95, Summary(0.93, 0.0, 3)),
        (0.99, Summary(0.70, 0.05, 3)),
    ]
    assert safe_sparsity(points, dense) == 0.9
    assert safe_sparsity(points, Summary(0.99, 0.0, 1)) is None
    assert safe_sparsity([(0.8, Summary(0.95, 0.0, 1))], Summary(0.95, 0.0, 1)) == 0.8


def test_winner_and_whether_the_gap_exceeds_the_spread():
    verdict = winner({"ft": Summary(0.80, 0.01, 3), "lrr": Summary(0.90, 0.02, 3), "wr": Summary(0.89, 0.02, 3)})
    assert (verdict.winner, verdict.runner_up) == ("lrr", "wr")
    assert verdict.gap == pytest.approx(0.01)
    assert not verdict.beyond_spread
    clear = winner({"ft": Summary(0.80, 0.01, 3), "lrr": Summary(0.90, 0.02, 3)})
    assert clear.beyond_spread and clear.gap == pytest.approx(0.10)
    alone = winner({"ft": Summary(0.8, 0.0, 1)})
    assert alone.runner_up is None and math.isinf(alone.gap)


def test_beats_requires_more_than_the_spread():
    assert beats(Summary(0.9, 0.01, 3), Summary(0.8, 0.05, 3))
    assert not beats(Summary(0.9, 0.1, 3), Summary(0.85, 0.01, 3))
    assert not beats(Summary(0.8, 0.0, 3), Summary(0.9, 0.0, 3))

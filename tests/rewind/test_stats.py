import math

import pytest
from scipy import stats as scipy_stats

from rewind.stats import Summary, best, paired_difference, safe_sparsity, summarize, winner


def test_summarize_uses_the_sample_standard_deviation():
    summary = summarize([0.90, 0.92, 0.94])
    assert summary.mean == pytest.approx(0.92)
    assert summary.std == pytest.approx(0.02)
    assert summary.n == 3 and summary.values == (0.90, 0.92, 0.94)
    assert summarize([0.5]) == Summary(0.5, 0.0, 1, (0.5,))
    with pytest.raises(ValueError):
        summarize([])


def test_paired_difference_matches_scipys_paired_t_interval():
    a = summarize([0.931, 0.952, 0.944, 0.960])
    b = summarize([0.921, 0.930, 0.941, 0.939])
    difference = paired_difference(a, b)
    deltas = [x - y for x, y in zip(a.values, b.values, strict=True)]
    low, high = scipy_stats.ttest_rel(a.values, b.values).confidence_interval(0.95)
    assert difference.mean == pytest.approx(sum(deltas) / 4)
    assert (difference.low, difference.high) == (pytest.approx(low), pytest.approx(high))
    assert difference.n == 4 and difference.significant == (low > 0 or high < 0)


def test_pairing_sees_a_lead_the_spread_hides():
    """Seeds move both strategies together: unpaired, the lead is within one std; paired, it is
    consistent in every seed and its interval excludes zero."""
    wr, ft = summarize([0.90, 0.95, 0.99]), summarize([0.89, 0.94, 0.98])
    assert wr.mean - ft.mean < min(wr.std, ft.std)
    assert paired_difference(wr, ft).significant
    noisy = paired_difference(summarize([0.90, 0.95, 0.99]), summarize([0.91, 0.93, 0.98]))
    assert noisy.mean > 0 and not noisy.significant


def test_one_seed_has_no_interval_and_no_verdict():
    difference = paired_difference(summarize([0.99]), summarize([0.5]))
    assert difference.mean == pytest.approx(0.49)
    assert math.isinf(difference.low) and math.isinf(difference.high)
    assert not difference.significant


def test_identical_results_are_no_lead():
    same = summarize([0.9, 0.8, 0.7])
    difference = paired_difference(same, same)
    assert (difference.mean, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert not difference.significant


def test_unpaired_values_are_refused():
    with pytest.raises(ValueError, match="paired values"):
        paired_difference(summarize([0.9, 0.8]), summarize([0.9]))


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


def test_the_winner_is_chosen_on_validation_and_its_lead_measured_on_test():
    validation = {"ft": summarize([0.80, 0.81]), "lrr": summarize([0.92, 0.91]), "wr": summarize([0.90, 0.90])}
    test = {"ft": summarize([0.81, 0.80]), "lrr": summarize([0.89, 0.90]), "wr": summarize([0.91, 0.92])}
    verdict = winner(validation, test)
    assert (verdict.winner, verdict.runner_up) == ("lrr", "wr"), "chosen on validation"
    assert verdict.lead.mean == pytest.approx(-0.02), "measured on test, where wr is ahead"
    alone = winner({"ft": summarize([0.8])}, {"ft": summarize([0.7])})
    assert alone.runner_up is None and alone.lead is None


def test_a_tie_on_validation_is_a_tie_whatever_the_order():
    """wr and lrr with the same validation counts seed by seed: neither wins, in either order,
    however far apart they are on test."""
    validation = {"wr": summarize([0.90, 0.92]), "lrr": summarize([0.92, 0.90]), "ft": summarize([0.80, 0.81])}
    test = {"wr": summarize([0.95, 0.96]), "lrr": summarize([0.85, 0.86]), "ft": summarize([0.80, 0.80])}
    for order in (["wr", "lrr", "ft"], ["lrr", "wr", "ft"]):
        verdict = winner({s: validation[s] for s in order}, test)
        assert verdict.winner is None and verdict.lead is None and set(verdict.tied) == {"wr", "lrr"}
    assert best({10: summarize([0.5]), 20: summarize([0.7]), 30: summarize([0.7])}) == [20, 30]

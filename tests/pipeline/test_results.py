"""pipeline.results: the results artifact is a table of three columns, a row per strategy at its
highest sparsity with mean ± std and the change against HEAD in parentheses, and the verdict.
(Its publication on a real server: tests/pipeline/test_flow.py.)"""

from pipeline.results import highest_sparsity, markdown, rows, table_data

ROUNDS = [f"round{k}" for k in range(11)]  # round10 is the last, though it sorts before round2 as text


def headline(holds: bool | None = True) -> dict:
    """A results/headline.json as the report stage writes it: 11 rounds, three strategies."""
    strategies = {
        name: {"accuracy": {r: 0.9 - 0.01 * k - gap for k, r in enumerate(ROUNDS)}, "safe_sparsity": 0.75}
        for name, gap in (("ft", 0.02), ("lrr", 0.0), ("wr", 0.005))
    }
    interval = (lambda low, high: {"low": low, "high": high}) if holds is not None else (lambda *_: {})
    verdict = {
        "sparsity": 0.984375,
        "wr_minus_ft": {"mean": 0.015, "low": None, "high": None} | interval(0.006, 0.023),
        "lrr_minus_ft": {"mean": 0.02, "low": None, "high": None} | interval(0.0125, 0.0275),
        "holds": holds,
    }
    return {"dense": {"accuracy": 0.98}, **strategies, "verdict": verdict}


# results/metrics.json: every value, mean over seeds, with its std
METRICS = {"dense": {"accuracy_std": 0.0042}} | {
    name: {r: {"accuracy_std": 0.006, "sparsity": 1 - 0.5 ** (k + 1)} for k, r in enumerate(ROUNDS)}
    for name in ("ft", "lrr", "wr")
}


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_a_row_per_strategy_at_its_last_round_with_std_and_change_in_parentheses():
    changes = {"lrr.accuracy.round10": 0.0133, "lrr.safe_sparsity": -0.125, "ft.accuracy.round2": 0.5}
    text = markdown(rows(headline(), changes, METRICS), headline()["verdict"], 0.984375, "rewind results")
    lines = table_lines(text)
    assert {line.count("|") - 1 for line in lines} == {3}, "three columns, every row"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["`dense`", "`ft`", "`lrr`", "`wr`", "verdict"]
    assert lines[2] == "| `dense` | 98.00 ± 0.42 |  |"
    assert lines[4] == "| `lrr` | 80.00 ± 0.60 (+1.33) | 75.00% (-12.50) |", "round10, not round2 or round9"
    assert lines[3] == "| `ft` | 78.00 ± 0.60 | 75.00% |", "a change of another round is not this row's"
    assert "highest sparsity, 98.44%" in text and "in parentheses" in text.lower() and "bracket" not in text


def test_the_verdict_row_says_holds_with_intervals_or_why_it_cannot_be_judged():
    judged = table_lines(markdown(rows(headline(), {}, METRICS), headline()["verdict"], None, "r"))[-1]
    assert judged == (
        "| verdict | holds: wr − ft +1.50 [+0.60, +2.30], lrr − ft +2.00 [+1.25, +2.75] points "
        "(95% CI, paired by seed) |  |"
    )
    one_seed = headline(holds=None)
    unjudged = table_lines(markdown(rows(one_seed, {}, METRICS), one_seed["verdict"], None, "r"))[-1]
    assert unjudged == "| verdict | cannot be judged (one seed): wr − ft +1.50, lrr − ft +2.00 points |  |"


def test_without_the_evaluation_the_table_has_no_std_and_the_sparsity_comes_from_the_verdict():
    no_verdict = {key: value for key, value in headline().items() if key != "verdict"}
    assert highest_sparsity(headline(), {}) == 0.984375
    assert highest_sparsity(no_verdict, METRICS) == 1 - 0.5**11
    assert highest_sparsity(no_verdict, {}) is None
    lines = table_lines(markdown(rows(no_verdict, {}, {}), None, None, "r"))
    assert lines[3] == "| `ft` | 78.00 | 75.00% |" and len(lines) == 2 + 4


def test_the_table_artifact_has_the_same_rows_as_numbers_in_five_columns():
    data = table_data(rows(headline(), {"lrr.accuracy.round10": 0.0133}, METRICS))
    assert [row["strategy"] for row in data] == ["dense", "ft", "lrr", "wr"]
    assert data[2] == {"strategy": "lrr", "accuracy %": 80.0, "std": 0.6, "change": 1.33, "safe sparsity %": 75.0}
    assert data[0]["safe sparsity %"] is None and {len(row) for row in data} == {5}

"""bench.flow's arithmetic on made-up pairs (test_bench runs the measuring: `python -m bench --quick`)."""

import pytest

from bench.flow import main, median_pair, report

CPU = {"total": 10.0, "stages_and_dvc": 9.0, "prefect_client": 0.5, "prefect_server_and_rest": 0.5}


def pair(repro_s: float, flow_s: float) -> dict:
    flow = {"wall_s": flow_s, "stages": 4, "stage_sum_s": 2 * flow_s, "idle_s": 0.1, "cpu_s": CPU}
    return {
        "dvc_repro_s": repro_s,
        "dvc_repro_cpu_s": CPU,
        "flow": flow,
        "speedup": repro_s / flow_s,
        "speedup_bound": repro_s / 5.0,
    }


def test_the_median_pair_is_one_real_pair():
    pairs = [pair(30.0, 20.0), pair(24.0, 20.0), pair(40.0, 20.0)]
    assert median_pair(pairs) is pairs[0]
    assert median_pair(pairs[:1]) is pairs[0]
    assert median_pair(pairs[1:]) is pairs[2]  # of two, the upper


def test_report_lists_every_pair_only_when_there_are_several():
    pairs = [pair(30.0, 20.0), pair(24.0, 20.0), pair(40.0, 20.0)]
    summaries = [{"dvc_repro_s": p["dvc_repro_s"], "speedup": p["speedup"], "flow_s": 20.0} for p in pairs]
    several = report({"parallelism": 3, "cores": 2, **median_pair(pairs), "repeats": summaries})
    assert "speed-up:                         1.50x  (median of 3: 1.50x (30.0 s -> 20.0 s), 1.20x" in several
    single = report({"parallelism": 3, "cores": 2, **pairs[0], "repeats": summaries[:1]})
    assert "median" not in single and "1.50x" in single


@pytest.mark.parametrize("option", ["--repeat", "--parallelism"])
def test_a_count_below_one_is_a_one_line_error_before_any_measuring(option, capsys):
    with pytest.raises(SystemExit) as caught:
        main([option, "0"])
    assert caught.value.code == 2
    assert f"{option} must be at least 1" in capsys.readouterr().err

"""The DAG as DVC builds it: templated stages, every dependency edge, a stable order."""

import pytest

from pipeline.dag import read_graph, topological_order
from tests.conftest import make_project
from tests.pipeline.conftest import flow_params


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return read_graph(make_project(tmp_path_factory.mktemp("dag") / "project", flow_params()))


def test_graph_has_dvc_stages_and_edges(graph):
    assert {"validate", "prepare", "train", "evaluate", "report"} <= set(graph)
    assert {"prune@ft-round0", "retrain@ft-round0", "prune@lrr-round0", "retrain@lrr-round0"} <= set(graph)
    assert graph["validate"] == frozenset()
    assert {"prune@lrr-round0", "train", "prepare"} <= graph["retrain@lrr-round0"]
    assert "retrain@ft-round0" not in graph["retrain@lrr-round0"], "strategies are independent branches"
    assert {"retrain@ft-round0", "retrain@lrr-round0"} <= graph["evaluate"]


def test_topological_order_puts_every_stage_after_its_dependencies(graph):
    order = topological_order(graph)
    assert sorted(order) == sorted(graph)
    position = {name: index for index, name in enumerate(order)}
    assert all(position[dep] < position[name] for name, deps in graph.items() for dep in deps)
    assert order[0] == "validate" and order[-1] == "report"

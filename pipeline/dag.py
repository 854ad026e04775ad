"""The stage DAG, as DVC itself builds it from dvc.yaml and params.yaml.

Reading DVC's own index (not parsing dvc.yaml, not a second hand-written copy) means templated
stages (`retrain@lrr-round3`), `params.yaml`-driven matrices and every dependency edge are
exactly the ones `dvc repro` would use.
"""

import os
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from pipeline import PipelineError

Graph = dict[str, frozenset[str]]  # stage name → the stages it depends on


def read_graph(project: Path) -> Graph:
    """Every stage DVC knows in `project`, with its upstream stages; a broken dvc.yaml is one line."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(project)) as repo:
            graph = repo.index.graph  # networkx DiGraph; an edge points from a stage to its dependency
            return {
                address(stage, project): frozenset(address(dep, project) for dep in graph.successors(stage))
                for stage in graph.nodes
            }
    except DvcException as err:
        raise PipelineError(f"dvc.yaml: {' '.join(str(err).split())[:300]}") from None


def address(stage: Any, project: Path) -> str:
    """The stage's name as `dvc repro -s` and `dvc status` spell it from the project root.

    (`stage.addressing` is relative to the process's working directory, which is not the
    project's when the flow runs elsewhere.)
    """
    dvcfile = os.path.relpath(stage.path, project)
    name = getattr(stage, "name", None)
    if name is None:  # a .dvc file
        return dvcfile
    return name if dvcfile == "dvc.yaml" else f"{dvcfile}:{name}"


def topological_order(graph: Graph) -> list[str]:
    """Stages ordered so each comes after its dependencies; ties broken by name for stable logs."""
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def run_cacheable(project: Path) -> set[str]:
    """The stages whose results another machine can restore from DVC's run-cache on the remote.

    Not those without a command or dependencies, `always_changed` ones, nor any with a `persist`
    or `cache: false` output: DVC keeps no usable run-cache entry for them, or never pushes the
    file (in rewind: validate, evaluate, report). These run wherever the pipeline is reproduced.
    """
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {
            address(stage, project)
            for stage in repo.index.stages
            if getattr(stage, "cmd", None)
            and stage.deps
            and stage.outs
            and not stage.always_changed
            and all(out.use_cache and not out.persist for out in stage.outs)
        }

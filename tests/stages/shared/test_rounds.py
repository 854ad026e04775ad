"""One seed's retraining as the stages run it, against the dense run it starts from.

The oracle: weight rewinding with no weight pruned replays the dense run's last t epochs from its
rewind point T-t, with the same rates and data order. With the momentum saved at that point
(`momentum: restored`, the paper code's behaviour) it must end on the dense network's final
weights bit for bit; with fresh momentum it must not.
"""

import sys
from pathlib import Path

import pytest
import torch

from rewind.checkpoint import load_tensors
from stages.shared import layout
from tests.conftest import make_project, run, tiny_params

EPOCHS, BUDGET, SEED = 4, 2, 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("rounds") / "p", tiny_params(**{"train.epochs": EPOCHS}))
    for stage in ("validate", "prepare", "train"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


# Run as a stage runs (its own process: kernels pinned before torch loads, params' thread count).
REWIND = """
import sys
from rewind.checkpoint import save_tensors
from rewind.prune import full_masks
from rewind.strategies import Strategy
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.files import load_dataset, new_model
from stages.shared.params import load_params
from stages.shared.rounds import retrain

momentum, budget, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = load_params()
data = load_dataset(device_for(params))
wr = Strategy("wr", "rewind", "replay", budget, momentum)
masks = full_masks(new_model(params, data, seed))
model, history, _ = retrain(params, data, wr, layout.DENSE, masks, [], seed, 0, "test-" + momentum)
assert [r.lr for r in history] == list(params.train.schedule().rates(params.train.epochs - budget, params.train.epochs))
save_tensors("rewound-" + momentum + ".safetensors", model.state_dict())
"""


def rewound(project: Path, momentum: str) -> dict[str, torch.Tensor]:
    run([sys.executable, "-c", REWIND, momentum, str(BUDGET), str(SEED)], project)
    return load_tensors(project / f"rewound-{momentum}.safetensors")[0]


def test_rewinding_with_restored_momentum_replays_the_dense_run_exactly(trained):
    final, _ = load_tensors(trained / layout.model(layout.DENSE, SEED))
    replayed = rewound(trained, "restored")
    assert all(torch.equal(replayed[name], final[name]) for name in final)


def test_rewinding_with_fresh_momentum_does_not(trained):
    final, _ = load_tensors(trained / layout.model(layout.DENSE, SEED))
    replayed = rewound(trained, "fresh")
    assert not all(torch.equal(replayed[name], final[name]) for name in final)


def test_the_dense_run_keeps_its_momentum_beside_every_rewind_point(trained):
    """None before the first step; after it, one buffer per parameter; the last is the point's."""
    start, _ = load_tensors(trained / layout.checkpoint_momentum(SEED, 0))
    assert start == {}
    last, _ = load_tensors(trained / layout.checkpoint_momentum(SEED, EPOCHS))
    final, _ = load_tensors(trained / layout.momentum(layout.DENSE, SEED))
    weights, _ = load_tensors(trained / layout.model(layout.DENSE, SEED))
    assert set(last) == {name for name in weights if not name.endswith(("running_mean", "running_var"))}
    assert all(torch.equal(last[name], final[name]) for name in final)

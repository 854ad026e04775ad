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
STEPS_PER_EPOCH = 11  # digits' 1,347 training images at batch 128
KEPT = 17  # a step inside epoch 2 that the dense run keeps (train.rewind_iterations)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    params = tiny_params(**{"train.epochs": EPOCHS, "train.rewind_iterations": [KEPT]})
    project = make_project(tmp_path_factory.mktemp("rounds") / "p", params)
    for stage in ("validate", "prepare", "train"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


# Run as a stage runs (its own process: kernels pinned before torch loads, params' thread count).
REWIND = """
import sys
from rewind.checkpoint import save_tensors
from rewind.prune import full_masks
from rewind.schedule import Duration
from rewind.strategies import Strategy
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.files import load_dataset, new_model
from stages.shared.params import load_params
from stages.shared.progress import Watch
from stages.shared.rounds import retrain

momentum, seed = sys.argv[1], int(sys.argv[3])
budget = Duration.parse(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
params = load_params()
data = load_dataset(device_for(params))
wr = Strategy("wr", "rewind", "replay", budget, momentum)
masks = full_masks(new_model(params, data, seed))
model, history, _ = retrain(params, data, wr, layout.DENSE, masks, [], seed, 0, "test-" + momentum, Watch("wr", 1, 1))
schedule = params.train.lr_schedule(11)
total = schedule.total_steps
assert sum(r.steps for r in history) == budget.steps(11)
assert history[0].lr == schedule.lr(total - budget.steps(11))
save_tensors("rewound-" + momentum + ".safetensors", model.state_dict())
"""


def rewound(project: Path, momentum: str, budget: str = str(BUDGET)) -> dict[str, torch.Tensor]:
    run([sys.executable, "-c", REWIND, momentum, budget, str(SEED)], project)
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


def test_rewinding_to_an_iteration_replays_the_dense_run_from_that_very_step(trained):
    """An iteration budget rewinds mid-epoch, to the weights the dense run kept after step 17;
    with their momentum it replays the dense run's last 27 steps bit for bit."""
    final, _ = load_tensors(trained / layout.model(layout.DENSE, SEED))
    kept, _ = load_tensors(trained / layout.step_checkpoint(SEED, KEPT))
    before, _ = load_tensors(trained / layout.checkpoint(SEED, KEPT // STEPS_PER_EPOCH))
    assert not all(torch.equal(kept[name], before[name]) for name in kept), "a step's weights, not an epoch's"
    replayed = rewound(trained, "restored", f"{EPOCHS * STEPS_PER_EPOCH - KEPT}it")
    assert all(torch.equal(replayed[name], final[name]) for name in final)


def test_a_step_the_dense_run_did_not_keep_is_one_line_saying_how_to_keep_it(trained):
    result = run([sys.executable, "-c", REWIND, "fresh", "20it", str(SEED)], trained, check=False)
    assert "the dense run kept no weights at step 24; list it in train.rewind_iterations" in result.stderr

"""Stage `evaluate`: test accuracy, loss, sparsity and size of the dense network and every round.

One metrics file with stable keys, dense → values and strategy → round<k> → values, so
`dvc metrics diff` lines up across commits and experiments.
"""

import argparse

from rewind.metrics import evaluate
from stages import layout
from stages.common import device_for, load_dataset, load_masks, load_model, log, run_stage, write_json
from stages.params import Params


def evaluate_all(params: Params, args: argparse.Namespace) -> None:
    device = device_for(params)
    data = load_dataset(device)

    def measure(folder) -> dict:
        model = load_model(params, data, folder / layout.MODEL, device)
        masks = load_masks(folder / layout.MASK, model)
        return evaluate(model, masks, data.x_test, data.y_test).as_dict()

    results: dict[str, dict] = {"dense": measure(layout.DENSE)}
    for strategy in params.compare:
        results[strategy] = {f"round{spec.id}": measure(layout.round_dir(strategy, spec.id)) for spec in params.rounds}
    write_json(layout.METRICS, results)
    log.info(
        "dense test accuracy %.4f; %d strategies x %d rounds evaluated",
        results["dense"]["accuracy"],
        len(params.compare),
        len(params.rounds),
    )


if __name__ == "__main__":
    run_stage(evaluate_all, "Evaluate the dense network and every retrained round on the test set.")

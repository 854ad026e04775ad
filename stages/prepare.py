"""Stage `prepare`: the dataset as one verified tensor file, so later stages load it fast."""

import argparse

from rewind.checkpoint import save_tensors
from rewind.data import load_digits
from stages import layout
from stages.common import log, run_stage
from stages.params import Params


def prepare(params: Params, args: argparse.Namespace) -> None:
    data = load_digits(params.data.test_fraction, params.seed)
    save_tensors(layout.DATASET, data.tensors(), {"name": params.data.name, "num_classes": str(data.num_classes)})
    log.info(
        "%s: %d train, %d test examples of shape %s",
        params.data.name,
        len(data.y_train),
        len(data.y_test),
        data.input_shape,
    )


if __name__ == "__main__":
    run_stage(prepare, "Prepare the dataset.")

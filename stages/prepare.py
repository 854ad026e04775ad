"""Stage `prepare`: the dataset as one verified tensor file, so later stages load it fast.

Digits ships with scikit-learn and is split by `data.split_seed`; CIFAR-10 and MNIST are read
from `data.root` in their published formats, with their published train/test split; a dataset of
your own comes from its `package.module:load` function, called with `data.split_seed`.
"""

import argparse
from pathlib import Path

from rewind.checkpoint import save_tensors
from rewind.data import Dataset, hold_out, load_cifar10, load_digits, load_mnist, load_plugin
from rewind.plugins import is_import_path
from stages.shared import layout
from stages.shared.entry import log, run_stage
from stages.shared.params import Params, ParamsError

FOLDER_LOADERS = {"cifar10": load_cifar10, "mnist": load_mnist}


def load(params: Params) -> Dataset:
    """The dataset params.yaml names; a missing or malformed folder is a RewindError naming it,
    a dataset of your own that is not what it declares is one naming the key."""
    if params.data.name == "digits":
        return load_digits(params.data.test_fraction, params.data.split_seed)
    if is_import_path(params.data.name):
        data = load_plugin(params.data.name, params.data.split_seed)
        shape, classes = params.shapes()
        if (data.input_shape, data.num_classes) != (shape, classes):
            raise ParamsError(
                f"params.yaml: data.input_shape, data.num_classes: declared {list(shape)} and {classes}, "
                f"but {params.data.name} loads examples {list(data.input_shape)} of {data.num_classes} classes"
            )
        return data
    assert params.data.root is not None  # checked by stages.shared.params
    return FOLDER_LOADERS[params.data.name](Path(params.data.root))


def prepare(params: Params, args: argparse.Namespace) -> None:
    data = hold_out(load(params), params.data.validation_fraction, params.data.split_seed)
    meta = {"name": params.data.name, "num_classes": str(data.num_classes), "train_examples": str(len(data.y_train))}
    save_tensors(layout.DATASET, data.tensors(), meta)
    log.info(
        "%s: %d train, %d validation, %d test examples of shape %s",
        params.data.name,
        len(data.y_train),
        len(data.y_val),
        len(data.y_test),
        data.input_shape,
    )


if __name__ == "__main__":
    run_stage(prepare, "Prepare the dataset.")

"""Training settings from params, shared by dense training and every retraining."""

from rewind.data import random_crop_flip
from rewind.train import SGD, EpochRecord
from stages.shared.params import Params


def sgd(params: Params) -> SGD:
    t = params.train
    return SGD(t.batch_size, t.momentum, t.weight_decay, t.nesterov)


def batch_options(params: Params) -> dict:
    """What the loop does to every batch, for dense training and retraining alike: the
    augmentation (CIFAR's crop and flip, when `train.augment`) and the forward precision."""
    return {"augment": random_crop_flip if params.train.augment else None, "precision": params.train.precision}


def train_log(history: list[EpochRecord]) -> dict:
    """Per-epoch rate, loss and accuracy: deterministic, so identical reruns give identical files."""
    return {"epochs": [{k: v for k, v in vars(record).items() if k != "seconds"} for record in history]}

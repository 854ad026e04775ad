"""An example dataset of your own: scikit-learn's two interleaving half circles, 2 features.

Use it as `data.name: plugins.two_moons:load` (after `cp examples/*.py plugins/`), with
`data.input_shape: [2]` and `data.num_classes: 2`.
"""

import torch
from sklearn.datasets import make_moons

from rewind.data import Dataset

EXAMPLES, TEST = 1200, 400


def load(split_seed: int) -> Dataset:
    """1,200 noisy points, the last 400 for testing; the same `split_seed` gives the same data."""
    x, y = make_moons(n_samples=EXAMPLES, noise=0.2, random_state=split_seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    return Dataset(x[:-TEST], y[:-TEST], x[-TEST:], y[-TEST:], num_classes=2)

"""Models and datasets named by import path: the contracts hold, and every wrong path is one line."""

import sys
import textwrap

import pytest
import torch

from rewind import RewindError
from rewind.data import load_plugin
from rewind.models import architecture, build_model, prunable_names
from rewind.plugins import load_callable


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `mine` on the import path, with the modules a test writes into it."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, source: str) -> None:
        (tmp_path / "mine" / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(f"mine.{module}", None)

    yield write
    for name in [n for n in sys.modules if n == "mine" or n.startswith("mine.")]:
        del sys.modules[name]


MODEL = """
    from torch import nn

    def build(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))

    def not_a_model(input_shape, num_classes):
        return "a string"

    def nothing_to_prune(input_shape, num_classes):
        return nn.ReLU()

    NUMBER = 3
"""


def test_a_model_of_your_own_is_built_seeded_and_prunable(package):
    package("models", MODEL)
    a, b = (build_model("mine.models:build", (5,), 3, seed=7) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert prunable_names(a) == ["1.weight", "3.weight"]
    assert architecture("mine.models:build", (5,), 3).get_parameter("1.weight").is_meta


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("mine.nowhere:build", "'mine.nowhere:build': no module named 'mine.nowhere' (is its folder on the path?)"),
        ("mine.models:absent", "'mine.models:absent': module mine.models has no 'absent'"),
        ("mine.models:NUMBER", "'mine.models:NUMBER': NUMBER is a int, not a function"),
        ("mine.models", "unknown model 'mine.models'"),
        ("mine.models:build:x", "'mine.models:build:x' is not an import path of the form package.module:function"),
        ("mine.models:not_a_model", "model 'mine.models:not_a_model' returned a str, not a torch.nn.Module"),
        ("mine.models:nothing_to_prune", "model 'mine.models:nothing_to_prune' has no conv or linear layer"),
        ("mine.broken:build", "'mine.broken:build': importing mine.broken failed: SyntaxError"),
    ],
)
def test_every_wrong_model_path_is_one_line_naming_it(package, path, expected):
    package("models", MODEL)
    package("broken", "def build(:\n")
    with pytest.raises(RewindError) as caught:
        build_model(path, (5,), 3, seed=0)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


DATA = """
    import torch
    from rewind.data import Dataset

    def load(split_seed):
        g = torch.Generator().manual_seed(split_seed)
        x, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
        return Dataset(x[:20], y[:20], x[20:], y[20:], num_classes=3)

    def wrong_type(split_seed):
        return {"x": 1}

    def bad_labels(split_seed):
        x = torch.zeros(4, 2)
        return Dataset(x, torch.tensor([0, 1, 2, 5]), x, torch.tensor([0, 1, 2, 0]), num_classes=3)

    def float64(split_seed):
        x = torch.zeros(4, 2, dtype=torch.float64)
        y = torch.tensor([0, 1, 2, 0])
        return Dataset(x, y, x, y, num_classes=3)
"""


def test_a_dataset_of_your_own_is_a_pure_function_of_its_split_seed(package):
    package("data", DATA)
    a, b, c = load_plugin("mine.data:load", 1), load_plugin("mine.data:load", 1), load_plugin("mine.data:load", 2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.input_shape == (4,) and a.num_classes == 3


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("wrong_type", "'mine.data:wrong_type' returned a dict, not a rewind.data.Dataset"),
        ("bad_labels", "'mine.data:bad_labels': train labels fall outside 0 … 2"),
        ("float64", "'mine.data:float64': train split is torch.float64 and torch.int64; expected float32 and int64"),
    ],
)
def test_a_dataset_that_breaks_the_contract_is_one_line(package, function, expected):
    package("data", DATA)
    with pytest.raises(RewindError) as caught:
        load_plugin(f"mine.data:{function}", 0)
    assert str(caught.value) == expected


def test_load_callable_hands_back_the_function(package):
    package("models", MODEL)
    assert load_callable("mine.models:build").__name__ == "build"

"""stages.common: what every computing stage sets up before its maths."""

import pytest
import torch
import yaml

from stages.common import device_for
from stages.params import load_params
from tests.conftest import tiny_params


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def params_with_threads(tmp_path, threads):
    raw = tiny_params(**{"train.threads": threads})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("threads", [1, 2])
def test_the_stage_computes_with_the_threads_params_ask_for(tmp_path, restore_threads, threads):
    torch.set_num_threads(3 - threads)
    assert device_for(params_with_threads(tmp_path, threads)) == torch.device("cpu")
    assert torch.get_num_threads() == threads


def test_null_threads_leaves_torch_default(tmp_path, restore_threads):
    torch.set_num_threads(2)
    device_for(params_with_threads(tmp_path, None))
    assert torch.get_num_threads() == 2

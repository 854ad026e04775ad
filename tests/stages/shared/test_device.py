"""stages.shared.device: what every computing stage sets up before its maths."""

import pytest
import torch

from stages.shared.device import device_for
from tests.conftest import params_with


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_stage_computes_with_the_threads_params_ask_for(tmp_path, restore_threads, threads):
    torch.set_num_threads(3 - threads)
    assert device_for(params_with(tmp_path, threads=threads)) == torch.device("cpu")
    assert torch.get_num_threads() == threads


def test_null_threads_leaves_torch_default(tmp_path, restore_threads):
    torch.set_num_threads(2)
    device_for(params_with(tmp_path, threads=None))
    assert torch.get_num_threads() == 2

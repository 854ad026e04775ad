"""The device a stage computes on, set up so its results depend on params and seed only."""

import logging
import os

import torch

from rewind import RewindError
from stages.shared import kernels
from stages.shared.params import Params

log = logging.getLogger("rewind")


def device_for(params: Params) -> torch.device:
    """The training device with the CPU thread count params ask for and portable CPU kernels; on
    CUDA, deterministic kernels are requested as well.

    The thread count is a param, not the machine's core count, because on CPU it is part of the
    result: a float sum split over more threads is added in another order. On CPU the kernels we
    use are deterministic already, and `use_deterministic_algorithms` would import torch._dynamo,
    which costs 1.4 s of start-up in every stage.
    """
    if params.train.threads is not None:
        torch.set_num_threads(params.train.threads)
    use_portable_cpu_kernels()
    wanted = params.train.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise RewindError("train.device: 'cuda' requested but no CUDA device is available")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.device(wanted)


def use_portable_cpu_kernels() -> None:
    """oneDNN off on the CPU (its convolutions are compiled and blocked per CPU model); a warning
    where ATen could not be held to the portable kernels, so results may differ from other CPUs'."""
    torch.backends.mkldnn.enabled = False
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != kernels.CAPABILITY:
        log.warning(
            "CPU kernels at capability %s, not %s: results may differ from those of other machines "
            "(README: Determinism)",
            capability,
            kernels.CAPABILITY,
        )

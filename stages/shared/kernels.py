"""Portable CPU kernels: the same bits from every x86-64 CPU with AVX2.

torch chooses its CPU kernels by what the processor offers: ATen's vectorised loops at AVX-512
or AVX2 width, MKL's matrix products per instruction set, oneDNN's convolutions compiled for the
CPU at hand and blocked by its cache sizes. Each choice adds floats in another order, so two
machines with the same params and seed used to train different networks. The pins below take one
path everywhere: ATen's AVX2 kernels, MKL's COMPATIBLE branch in strict conditional numerical
reproducibility mode (the only branch MKL honours on non-Intel CPUs, which run its AUTO branch
for any other), and on the CPU no oneDNN (ATen's own convolution over MKL's products).

ATen and MKL read their settings when they load, so `pin()` runs from `stages/__init__.py`, before
any stage imports torch; oneDNN is a runtime switch, turned off where the device is chosen
(`stages.shared.device`). This module must not import torch.
"""

import os
import sys

CAPABILITY = "AVX2"  # what torch.backends.cpu.get_cpu_capability() reports under the pin
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels at AVX2 width, also on AVX-512 CPUs
    "MKL_CBWR": "COMPATIBLE,STRICT",  # MKL's SSE2 code path, bitwise reproducible on every x86-64 CPU
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # should anything still reach oneDNN
}


def pin() -> None:
    """Set the pins for this process and its children, overriding the environment's, unless torch
    is loaded already (a test or notebook that imported it first: the pins could not take effect)."""
    if "torch" not in sys.modules:
        os.environ.update(PINS)

"""One module per DVC stage: read params.yaml, call the rewind library, write declared outputs.

Stages know paths and params; they hold no training or pruning logic of their own. Code they
share lives in `stages/shared/`. Importing this package pins torch's CPU kernels before any stage
module imports torch (`python -m stages.<name>` imports this file first), so a stage gives the
same bits on any x86-64 CPU with AVX2 whether `dvc repro`, the Prefect flow or a user runs it.
"""

from stages.shared import kernels

kernels.pin()

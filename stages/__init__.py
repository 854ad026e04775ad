"""One module per DVC stage: read params.yaml, call the rewind library, write declared outputs.

Stages know paths and params; they hold no training or pruning logic of their own. Code they
share lives in `stages/shared/`. Importing this package pins torch's CPU kernels before any stage
module imports torch (`python -m stages.<name>` imports this file first), so a stage gives the
same bits on any x86-64 CPU with AVX2 whether `dvc repro`, the Prefect flow or a user runs it.
Under a warm stage server (`make run`: stages/shared/warm.py) the stage is handed to the server
here, before torch loads, and this process only waits for its exit status.
"""

from stages.shared import kernels, warm

kernels.pin()
warm.delegate()

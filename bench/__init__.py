"""Where the time goes: `python -m bench` measures overheads as ratios against baselines taken in
the same run (a ratio survives a busy or different machine better than a raw time does).

Sections: mask overhead of MaskedSGD, DVC stage overhead, no-op and incremental reruns, the
Prefect flow against sequential DVC (bench.flow, on its own `python -m bench.flow`), peak memory
per stage, our training loop against a plain PyTorch loop, and the stages' portable CPU kernels
against torch's native ones. Nothing here runs in the pipeline; it works on throwaway copies of
the project (bench.sandbox, which the tests use too) in temporary directories only.
"""

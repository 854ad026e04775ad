"""Code every stage runs: params, file layout, entry point, device and kernels, loading, resumable
training and the retraining shared by `retrain` and `sweep`.

Every stage in dvc.yaml depends on this whole folder (and on `stages/__init__.py` and `rewind/`),
so an edit here reruns every stage it could change; a stage module imports only from here, from
`rewind/` and, for `report`, from `stages/figures.py` (tests/stages/test_deps.py checks it).
"""

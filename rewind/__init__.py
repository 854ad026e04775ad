"""rewind: prune a trained network, then compare how to retrain it.

The library is plain functions over tensors. It never reads params.yaml and never knows
where files live: that is the job of `stages/`.
"""


class RewindError(Exception):
    """A problem the user can fix (bad input, a corrupt file); reported as one line, no traceback."""

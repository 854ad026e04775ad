"""Stage `validate`: check all of params.yaml before any other stage touches its outputs.

DVC deletes a stage's outputs before running it, so a bad value caught only inside, say,
retrain would already have cost that stage's previous results. `prepare` depends on this
stage's output, which makes it run first whenever params.yaml changes. The output is the
same text every time, so rerunning it never invalidates anything downstream.

Params that are valid but will not measure what they seem to (a fine-tuning whose rate cannot
move the weights) get a warning line each, not an error: the report says what they did.
"""

import argparse

from rewind.checkpoint import atomic_write_bytes
from stages.shared import layout
from stages.shared.entry import log, run_stage
from stages.shared.params import Params, rate_warnings


def validate(params: Params, args: argparse.Namespace) -> None:
    for line in rate_warnings(params):
        log.warning("params.yaml: %s", line)
    atomic_write_bytes(layout.PARAMS_OK, b"params.yaml passed validation\n")


if __name__ == "__main__":
    run_stage(validate, "Validate params.yaml.")

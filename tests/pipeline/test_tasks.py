"""How a failed `dvc repro -s` is told apart: transient (retried) or the stage's own error (not)."""

import subprocess

import pytest

from pipeline.tasks import StageFailed, TransientStageFailure, failure_of

DVC_FAILED = "ERROR: failed to reproduce 'prune@lrr-round0': failed to run: python -m stages.prune, exited with {code}"


def completed(stderr: str, returncode: int = 255) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(args=["dvc"], returncode=returncode, stdout="", stderr=stderr)


@pytest.mark.parametrize("code", [-9, -15, 137, 143])
def test_a_command_killed_by_a_signal_is_transient_whichever_shell_reports_it(code):
    failure = failure_of("prune@lrr-round0", completed(DVC_FAILED.format(code=code)))
    assert isinstance(failure, TransientStageFailure)
    assert str(failure).startswith("stage 'prune@lrr-round0' failed: ERROR: failed to reproduce")


@pytest.mark.parametrize("code", [1, 2, 127])
def test_a_command_that_exits_on_its_own_is_not_retried(code):
    failure = failure_of("prune@lrr-round0", completed(DVC_FAILED.format(code=code)))
    assert type(failure) is StageFailed


def test_the_stage_own_error_line_is_the_message():
    output = "error: params.yaml: train.epochs: must be > 0\n" + DVC_FAILED.format(code=2)
    failure = failure_of("train", completed(output))
    assert str(failure) == "stage 'train' failed: error: params.yaml: train.epochs: must be > 0"
    assert type(failure) is StageFailed


def test_lock_contention_is_transient():
    output = "ERROR: Unable to acquire lock. Most likely another DVC process is running"
    assert isinstance(failure_of("evaluate", completed(output)), TransientStageFailure)


def test_dvc_itself_killed_is_transient():
    assert isinstance(failure_of("evaluate", completed("", returncode=-9)), TransientStageFailure)

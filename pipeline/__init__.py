"""Prefect orchestration over the DVC pipeline.

DVC stays the authority: the flow reads the DAG from DVC, runs every stage through
`dvc repro -s`, and DVC decides what is stale and records every output in dvc.lock. Prefect
adds what DVC lacks: independent branches (the strategies) in parallel, retries of transient
failures, a results artifact, schedules and a UI. No stage logic lives here.
"""

import os
import subprocess
from collections.abc import Sequence

# Telemetry off before Prefect is imported anywhere in this package (the machine is offline).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


class PipelineError(Exception):
    """A problem the user can fix (bad flow options, a dirty workspace); reported as one line."""


def dvc_output(args: Sequence[str], result: subprocess.CompletedProcess) -> str:
    """The stdout of a finished `dvc *args`; a failure is one PipelineError line with DVC's first error."""
    if result.returncode != 0:
        errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        raise PipelineError(f"dvc {' '.join(args)}: {(errors or ['failed'])[0]}")
    return result.stdout

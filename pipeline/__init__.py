"""Prefect orchestration over the DVC pipeline.

DVC stays the authority: the flow reads the DAG from DVC, runs every stage through
`dvc repro -s` (pipeline.dvc_cli), and DVC decides what is stale and records every output in
dvc.lock. Prefect adds what DVC lacks: independent branches (the strategies) in parallel,
retries of transient failures, a results artifact, schedules and a UI. No stage logic lives here.
"""

import os

# The one list of telemetry switches (the machine is offline): every process the flow, the
# benchmark and the tests start gets these, and the Makefile exports the same for shell commands.
QUIET_ENV = {"DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

# Set before Prefect is imported anywhere in this package; a value set by the caller is kept.
for _name, _value in QUIET_ENV.items():
    os.environ.setdefault(_name, _value)


class PipelineError(Exception):
    """A problem the user can fix (bad flow options, a dirty workspace); reported as one line."""

"""Prefect orchestration over the DVC pipeline.

DVC stays the authority: the flow reads the DAG from DVC, runs every stage through
`dvc repro -s`, and DVC decides what is stale and records every output in dvc.lock. Prefect
adds what DVC lacks: independent branches (the strategies) in parallel, retries of transient
failures, a results artifact, schedules and a UI. No stage logic lives here.
"""

import os

# Telemetry off before Prefect is imported anywhere in this package (the machine is offline).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


class PipelineError(Exception):
    """A problem the user can fix (bad flow options, a dirty workspace); reported as one line."""

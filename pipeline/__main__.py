"""`python -m pipeline`: run the flow once, here and now, against PREFECT_API_URL or a temporary server.

python -m pipeline                                   # like `dvc repro`, branches in parallel
python -m pipeline --strategy ft --strategy lrr      # compare two strategies (an experiment)
python -m pipeline --set strategies.lrr.budget=30    # an override (an experiment), as dvc exp run -S
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import PipelineError
from pipeline.options import RunOptions, plan_run


def parse_args(argv: list[str] | None = None) -> tuple[RunOptions, Path]:
    """Command-line arguments as the flow's RunOptions; values parse as YAML, as with `dvc exp run -S`."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--strategy", action="append", dest="strategies", help="a strategy to compare (repeat)")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml override")
    parser.add_argument(
        "--parallelism", type=int, help="stages at the same time, at most (default: cores / train.threads + 1; GPU: 2)"
    )
    parser.add_argument("--retries", type=int, default=2, help="retries after a transient failure (default 2)")
    parser.add_argument("--experiment", help="name of the DVC experiment a run with overrides is saved as")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project folder (default: here)")
    args = parser.parse_args(argv)
    overrides = dict(_override(item) for item in args.set)
    options = RunOptions(
        strategies=args.strategies,
        overrides=overrides,
        parallelism=args.parallelism,
        retries=args.retries,
        experiment=args.experiment,
    )
    return options, args.project


def main(argv: list[str] | None = None) -> int:
    """Plan the run, run the flow; a problem is one `error:` line and exit status 2 (1 if a stage failed).

    Options and overrides are resolved and checked (as the stages check params.yaml) before Prefect
    is imported, so a typo costs no server start and prints no Prefect log or traceback; the flow
    gets the plan and does not resolve it again.
    """
    try:
        options, project = parse_args(argv)
        plan = plan_run(options, project)
        _start_prefect()
    except (PipelineError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    from pipeline.flow import run_plan

    state = run_plan(plan=plan, return_state=True)
    if not state.is_completed():
        print(f"error: {state.result(raise_on_failure=False)}", file=sys.stderr)
        return 1
    return 0


def _override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise PipelineError(f"--set {item!r}: expected KEY=VALUE")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:  # e.g. an unclosed `[`: YAML's own problem, without its multi-line excerpt
        raise PipelineError(f"--set {item!r}: not valid YAML: {getattr(err, 'problem', None) or err}") from None


def _start_prefect() -> None:
    """Start the temporary Prefect server the flow would start, so that failing to start is one line.

    Started by the flow, a server that misses its startup timeout (a busy machine; see prefect.toml)
    is a traceback; the flow finds this one running instead. None is needed when PREFECT_API_URL
    names a server, and none is started when the temporary server is turned off.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return
    try:
        SubprocessASGIServer().start()
    except RuntimeError as err:
        raise PipelineError(
            f"Prefect: the temporary server did not start ({str(err).rstrip('.')}); raise "
            f"server.ephemeral.startup_timeout_seconds in prefect.toml (now "
            f"{settings.server.ephemeral.startup_timeout_seconds} s) or set PREFECT_API_URL to a running server"
        ) from None


if __name__ == "__main__":
    raise SystemExit(main())

"""The results artifacts: the answer at a glance, and the report.

`rewind-results` is a table narrow enough for Prefect's UI, three columns: a row per strategy
(the dense network first) with its test accuracy at the highest sparsity, mean ± std over seeds,
and its safe sparsity (the highest sparsity within one std of dense), then a row with the verdict
on the paper's claim. Its values are the headline metrics (results/headline.json, from `dvc
metrics show`), each with its change against the committed metrics (`dvc metrics diff`) in
parentheses; the std, not a headline metric, comes from the evaluation's results/metrics.json.
`rewind-results-table` holds the strategies' rows as numbers. The report stage's markdown (every
round, paired differences, winners, sizes, the budget sweep) is published beside it, so the UI
shows the same tables as reports/report.md, and its figures: embedded as data, since the UI
cannot load the report's links to files beside it.
"""

import base64
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import dvc_cli
from stages.shared.layout import HEADLINE, METRICS, REPORT

ARTIFACT_KEY = "rewind-results"  # Prefect artifact keys must match ^[a-z0-9-]*$
TABLE_KEY = "rewind-results-table"
REPORT_KEY = "rewind-report"
DENSE, VERDICT = "dense", "verdict"  # the headline's groups that are not strategies
IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^():\s]+\.png)\)")  # ![alt](name.png): a file, not a URL


class Row(NamedTuple):
    """One strategy (or the dense network) at the highest sparsity: fractions, as in the metrics
    files; a change is against the committed metrics, None where there is none."""

    name: str
    accuracy: float | None
    std: float | None
    accuracy_change: float | None
    safe_sparsity: float | None
    safe_sparsity_change: float | None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys, the way `dvc metrics diff` names them."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def collect(project: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """(the headline metrics now, nested; their changes against HEAD by dotted key), from DVC."""
    shown, diff = dvc_cli.metrics(project)
    revisions = (rev.get("data") or {} for rev in shown.values())
    headline = next(revisions, {}).get(str(HEADLINE), {}).get("data") or {}
    changes = {key: change.get("diff") for key, change in (diff.get(str(HEADLINE)) or {}).items()}
    return headline, {key: value for key, value in changes.items() if isinstance(value, int | float) and value != 0}


def spreads(project: Path) -> dict[str, Any]:
    """results/metrics.json (every value the evaluation computed), for the std over seeds; empty
    when the run has none (a run that selected strategies but not the evaluation)."""
    try:
        return json.loads((project / METRICS).read_text())
    except (OSError, ValueError):
        return {}


def strategies(headline: dict[str, Any]) -> dict[str, str]:
    """Each strategy of the headline and the key of its highest-sparsity round (the last `round<k>`)."""
    return {
        name: max(values["accuracy"], key=lambda key: int(key.removeprefix("round")))
        for name, values in headline.items()
        if name not in (DENSE, VERDICT) and isinstance(values.get("accuracy"), dict) and values["accuracy"]
    }


def rows(headline: dict[str, Any], changes: dict[str, float], metrics: dict[str, Any]) -> list[Row]:
    """The dense network, then each strategy at its highest sparsity, all looked up by the dotted
    keys `dvc metrics diff` uses (`lrr.accuracy.round5`), the std by results/metrics.json's."""
    values, spread = flatten(headline), flatten(metrics)
    keys = [(DENSE, f"{DENSE}.accuracy", f"{DENSE}.accuracy_std", "")]
    keys += [
        (name, f"{name}.accuracy.{last}", f"{name}.{last}.accuracy_std", f"{name}.safe_sparsity")
        for name, last in strategies(headline).items()
    ]
    return [
        Row(name, values.get(mean), spread.get(std), changes.get(mean), values.get(safe), changes.get(safe))
        for name, mean, std, safe in keys
    ]


def highest_sparsity(headline: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    """The sparsity of the last round: the verdict's, or the evaluation's where there is no verdict."""
    if headline.get(VERDICT, {}).get("sparsity") is not None:
        return headline[VERDICT]["sparsity"]
    spread = flatten(metrics)
    found = [spread.get(f"{name}.{last}.sparsity") for name, last in strategies(headline).items()]
    return next((sparsity for sparsity in found if sparsity is not None), None)


def verdict_text(verdict: dict[str, Any]) -> str:
    """The paper's claim in words: holds or not, each rewinding strategy's paired difference with
    ft, in points, with its 95% confidence interval (none with one seed)."""
    judged = {True: "holds", False: "is not supported", None: "cannot be judged (one seed)"}[verdict.get("holds")]
    gains = {
        key.replace("_minus_", " − "): gain
        for key, gain in verdict.items()
        if key.endswith("_minus_ft") and isinstance(gain, dict)
    }
    text = ", ".join(f"{name} {_difference(gain)}" for name, gain in gains.items())
    intervals = any(gain.get("low") is not None for gain in gains.values())
    return f"{judged}: {text} points" + (" (95% CI, paired by seed)" if intervals else "")


def markdown(table: list[Row], verdict: dict[str, Any] | None, sparsity: float | None, heading: str) -> str:
    """The three-column table: accuracy `mean ± std (change)` in %, safe sparsity, and the verdict."""
    where = "the highest sparsity" if sparsity is None else f"the highest sparsity, {_percent(sparsity)}"
    lines = [
        f"# {heading}",
        "",
        f"Test accuracy (%, mean ± std over seeds) at {where} (dense: unpruned); safe sparsity: the highest "
        "sparsity within one std of dense. In parentheses: the change against the last committed metrics "
        "(`dvc metrics diff`), in points.",
        "",
        "|  | accuracy | safe sparsity |",
        "|---|---:|---:|",
    ]
    for row in table:
        accuracy = _with_change(_accuracy(row.accuracy, row.std), row.accuracy_change)
        safe = "" if row.name == DENSE else _with_change(_percent(row.safe_sparsity), row.safe_sparsity_change)
        lines.append(f"| `{row.name}` | {accuracy} | {safe} |")
    if verdict:
        lines.append(f"| {VERDICT} | {verdict_text(verdict)} |  |")
    return "\n".join(lines) + "\n"


def table_data(table: list[Row]) -> list[dict[str, Any]]:
    """The rows as numbers for the table artifact: percent, rounded as shown; None where there is none."""
    return [
        {
            "strategy": row.name,
            "accuracy %": _round(row.accuracy),
            "std": _round(row.std),
            "change": _round(row.accuracy_change),
            "safe sparsity %": _round(row.safe_sparsity),
        }
        for row in table
    ]


def publish(project: Path, heading: str) -> str:
    """Create the results artifacts (and the report's) from `project`; returns the results markdown."""
    headline, changes = collect(project)
    metrics = spreads(project)
    table = rows(headline, changes, metrics)
    text = markdown(table, headline.get(VERDICT), highest_sparsity(headline, metrics), heading)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=text, description="rewind: the answer at the highest sparsity")
    create_table_artifact(
        key=TABLE_KEY, table=table_data(table), description="rewind: accuracy at the highest sparsity, as numbers"
    )
    report = project / REPORT
    if report.exists():  # absent when the run selected strategies but not the report stage
        create_markdown_artifact(
            key=REPORT_KEY,
            markdown=with_embedded_images(report.read_text(), report.parent),
            description="rewind: reports/report.md",
        )
    return text


def with_embedded_images(markdown: str, folder: Path) -> str:
    """The markdown with each linked PNG in `folder` inlined as a data URI (a missing one stays a link)."""

    def embed(link: re.Match) -> str:
        image = folder / link.group(2)
        if not image.is_file():
            return link.group(0)
        return f"![{link.group(1)}](data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()})"

    return IMAGE_LINK.sub(embed, markdown)


def _accuracy(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _percent(fraction: float | None) -> str:
    return "none" if fraction is None else f"{100 * fraction:.2f}%"


def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f}"


def _difference(gain: dict[str, Any]) -> str:
    """A paired difference in points, `+2.00 [+1.25, +2.75]`, the interval where there is one."""
    if gain.get("low") is None:
        return _points(gain["mean"])
    return f"{_points(gain['mean'])} [{_points(gain['low'])}, {_points(gain['high'])}]"


def _with_change(shown: str, change: float | None) -> str:
    return shown if change is None or not shown else f"{shown} ({_points(change)})"


def _round(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 2)

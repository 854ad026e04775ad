"""The results artifacts: the headline metrics (results/headline.json: accuracy per strategy and
round, safe sparsity, the verdict's intervals) with their change against HEAD, and the report.

Values come from DVC (`dvc metrics show` / `dvc metrics diff`), which knows the metrics files
from dvc.yaml, so the artifact shows what `dvc metrics diff` shows, laid out as a table: one
row per top-level key (`dense`, each strategy, `verdict`), one column per metric under it
(`accuracy.round3`, `safe_sparsity`, `lrr_minus_ft.low`, …), the change in brackets. The
report stage's markdown (mean ± std, winners, safe sparsity, sizes, the budget sweep) is
published beside it, so the UI shows the same tables as reports/report.md, and its figures:
embedded as data, since the UI cannot load the report's links to files beside it.
"""

import base64
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import dvc_cli
from stages.shared.layout import REPORT

ARTIFACT_KEY = "rewind-results"  # Prefect artifact keys must match ^[a-z0-9-]*$
TABLE_KEY = "rewind-results-table"
REPORT_KEY = "rewind-report"
FIRST_COLUMNS = ("accuracy", "safe_sparsity")
IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^():\s]+\.png)\)")  # ![alt](name.png): a file, not a URL


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys, the way `dvc metrics diff` names them."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def collect(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics now, metrics diff against HEAD), both keyed `file: dotted key`, from DVC."""
    shown, diff = dvc_cli.metrics(project)
    files = {
        file: content.get("data") or {} for rev in shown.values() for file, content in (rev.get("data") or {}).items()
    }

    def name(file: str, key: str) -> str:  # the file is named only when there are several
        return key if len(files) <= 1 else f"{file}: {key}"

    current = {name(file, key): value for file, data in files.items() for key, value in flatten(data).items()}
    changes = {name(file, key): change for file, keys in diff.items() for key, change in keys.items()}
    return current, changes


def table_rows(current: dict[str, Any], changes: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows: one row per top-level key, each metric under it with its change against HEAD."""
    groups: dict[str, dict[str, Any]] = {}
    for name, value in current.items():
        file, _, key = name.rpartition(": ")  # named only when there are several metrics files
        group, _, metric = key.partition(".")
        group, metric = (f"{file}: {group}" if file else group), metric or group
        row = groups.setdefault(group, {"group": group})
        row[metric] = value
        change = (changes.get(name) or {}).get("diff")
        if isinstance(change, int | float) and change != 0:
            row[f"{metric} change"] = change
    metrics = sorted({key for row in groups.values() for key in row if key != "group" and not key.endswith("change")})
    metrics.sort(key=lambda m: (FIRST_COLUMNS.index(m) if m in FIRST_COLUMNS else len(FIRST_COLUMNS), m))
    return metrics, list(groups.values())


def markdown(metrics: list[str], rows: list[dict[str, Any]], heading: str) -> str:
    """A markdown table: value, and `(+0.0133)` where it differs from the committed metrics."""
    lines = [f"# {heading}", "", "Change against the last committed metrics (`dvc metrics diff`) in brackets.", ""]
    lines.append("| " + " | ".join(["", *metrics]) + " |")
    lines.append("|" + "---|" + "---:|" * len(metrics))
    for row in rows:
        cells = [_cell(row.get(m), row.get(f"{m} change")) for m in metrics]
        lines.append("| " + " | ".join([f"`{row['group']}`", *cells]) + " |")
    return "\n".join(lines) + "\n"


def publish(project: Path, heading: str) -> str:
    """Create the markdown and table artifacts of the results in `project`; returns the markdown."""
    current, changes = collect(project)
    metrics, rows = table_rows(current, changes)
    text = markdown(metrics, rows, heading)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=text, description="rewind: headline metrics")
    create_table_artifact(key=TABLE_KEY, table=rows, description="rewind: headline metrics, as data")
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


def _cell(value: Any, change: Any) -> str:
    if value is None:
        return ""
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{shown} ({change:+.4g})" if change is not None else shown

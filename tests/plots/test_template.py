"""plots/template.html through DVC and a real browser: `dvc plots show` on the reproduced tiny
project writes a page that draws every chart and image in headless Chromium with no network,
loading nothing but its own files; `dvc plots diff` uses the same template."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.browser import missing, open_page
from tests.conftest import copy_of, dvc

pytestmark = pytest.mark.slow

CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)
VEGA_DIVS = "[...document.querySelectorAll('div.vega-embed')]"  # the class vegaEmbed gives a div it drew in
# A chart's coloured pixels on its canvas: its marks (lines, points, legend symbols) are coloured,
# while vega's background is white and its axes, grid and labels grey, so an empty chart has ~0.
COLOURED = """(c => { if (!c.width || !c.height) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
  }
  return n; })"""
DRAWN = (  # per chart: coloured pixels of its canvas, or mark paths of its SVG (vega-embed's renderer option)
    f"{VEGA_DIVS}.map(d => d.querySelector('canvas, svg'))"
    f".map(c => !c ? 0 : c.tagName === 'svg' ? c.querySelectorAll('.role-mark path').length * 1000 : {COLOURED}(c))"
)
IMAGES = "[...document.images].map(i => i.complete ? i.naturalWidth : 0)"


def declared_plots(project: Path) -> tuple[int, int]:
    """dvc.yaml's top-level plots: (vega charts, image plots)."""
    plots = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    images = sum(isinstance(plot, str) and plot.endswith(".png") for plot in plots)
    return len(plots) - images, images


def test_dvc_plots_show_draws_every_plot_offline_in_chromium(reproduced, tmp_path):
    assert missing() is None, missing()
    out = tmp_path / "dvc_plots"
    dvc("plots", "show", "-o", str(out), cwd=reproduced[0])
    html = (out / "index.html").read_text()
    assert not CDN_SCRIPT.search(html), "a script from the network: the page would be blank offline"
    charts = html.count("vegaEmbed('#")
    page = open_page(
        (out / "index.html").as_uri(),
        tmp_path / "plots.png",
        ready_js=f"{DRAWN}.length === {charts} && {DRAWN}.every(n => n > 500) && {IMAGES}.every(w => w > 0)",
        evaluate={
            "drawn": DRAWN,
            "images": IMAGES,
            "vega": "window.vega && vega.version",
            "fetched": "performance.getEntriesByType('resource').map(e => e.name)",
        },
        offline=True,
        timeout=90,  # the two cores are shared with the other test worker
    )
    print(f"screenshot: {page.screenshot}", file=sys.stderr)
    # every vega plot of dvc.yaml drawn (a chart without data has no coloured pixel; these have
    # thousands), and the report's PNGs as image plots, each loaded
    vega_plots, image_plots = declared_plots(reproduced[0])
    assert charts == len(page.facts["drawn"]) == vega_plots >= 4 and min(page.facts["drawn"]) > 500, page.facts
    assert len(page.facts["images"]) == image_plots == 3 and min(page.facts["images"]) > 0, page.facts
    assert page.facts["vega"] == "5.20.2", "the vendored vega, DVC's version"
    assert all(url.startswith("file://") for url in page.facts["fetched"]), page.facts["fetched"]
    assert page.errors == []


def test_dvc_plots_diff_uses_the_offline_template(reproduced, tmp_path):
    out = tmp_path / "diff"
    dvc("plots", "diff", "HEAD", "-o", str(out), cwd=reproduced[0])
    html = (out / "index.html").read_text()
    assert not CDN_SCRIPT.search(html)
    assert "/* vega-embed/build/vega-embed.min.js */" in html
    assert html.count("vegaEmbed('#") == declared_plots(reproduced[0])[0]


SERIES = """
window.rewindCharts = null;
const specs = %s;
function lines(mark) {  // every drawn line below a mark: its colour and dash
  let found = [];
  if (mark.marktype === 'line' && mark.items.length) {
    found.push({stroke: mark.items[0].stroke, dash: String(mark.items[0].strokeDash || '')});
  }
  for (const item of mark.items || []) for (const child of item.items || []) found = found.concat(lines(child));
  return found;
}
Promise.all(Object.entries(specs).map(([name, spec]) => {
  const div = document.createElement('div');
  document.body.appendChild(div);
  return vegaEmbed(div, spec, {renderer: 'svg', actions: false}).then(result => {
    const drawn = lines(result.view.scenegraph().root);
    return [name, {
      series: drawn.length,
      colours: new Set(drawn.map(line => line.stroke)).size,
      dashes: new Set(drawn.map(line => line.dash)).size,
      x_scale: result.view.scale('x') ? result.view.scale('x').type : null,
    }];
  });
})).then(charts => { window.rewindCharts = Object.fromEntries(charts); },
         error => { window.rewindCharts = {error: String(error)}; });
"""


def specs_of(html: str) -> dict[str, dict]:
    """Every vega-lite spec of a `dvc plots` page, by the id of the div it is drawn in."""
    decoder, specs = json.JSONDecoder(), {}
    for found in re.finditer(r"var spec = ", html):
        spec, end = decoder.raw_decode(html, found.end())
        specs[re.search(r"vegaEmbed\('#([^']+)'", html[end:]).group(1)] = spec
    return specs


def test_each_chart_draws_a_line_per_series_strategies_by_colour(reproduced, tmp_path):
    """One line per strategy, told apart by colour; the budget chart one line per strategy and
    sweep sparsity (two sparsities here), sparsities by dash; density on a log axis."""
    assert missing() is None, missing()
    project = copy_of(reproduced[0], tmp_path / "project")
    budget = project / "reports/budget.csv"
    header, *rows = budget.read_text().splitlines()
    second = [",".join(["0.98", *row.split(",")[1:]]) for row in rows]  # as a sweep over two sparsities writes it
    budget.write_text("\n".join([header, *rows, *second]) + "\n")
    out = tmp_path / "dvc_plots"
    dvc("plots", "show", "-o", str(out), cwd=project)
    specs = specs_of((out / "index.html").read_text())
    page = open_page(
        (out / "index.html").as_uri(),
        tmp_path / "series.png",
        setup_js=SERIES % json.dumps(specs),
        ready_js="window.rewindCharts !== null",
        evaluate={"charts": "window.rewindCharts"},
        offline=True,
        timeout=90,
    )
    charts = page.facts["charts"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    compared, swept = len(params["compare"]), len(params["sweep"]["strategies"])
    assert charts["accuracy_vs_sparsity"] == {"series": compared, "colours": compared, "dashes": 1, "x_scale": "log"}
    assert charts["accuracy_vs_budget"] == {"series": 2 * swept, "colours": swept, "dashes": 2, "x_scale": "linear"}
    assert charts["retraining_loss__last_round"]["series"] == charts["retraining_loss__last_round"]["colours"] == 3
    assert charts["dense_training_loss"]["series"] == 1
    assert page.errors == []

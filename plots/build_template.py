"""Rebuild plots/template.html, the page `dvc plots show` and `dvc plots diff` fill (`.dvc/config`:
`plots.html_template`), and plots/THIRD_PARTY_LICENSES.txt.

Why: DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN, so offline, or behind a
firewall, it shows no chart. This page carries them inline, at the versions DVC's page names
(dvc-render's `VegaRenderer.SCRIPTS`: vega 5.20.2, vega-lite 5.2.0, vega-embed 6.18.2; vega-lite
5.2.0 asks for vega ^5.21 as a peer, which DVC's page ignores too: `.npmrc` sets
legacy-peer-deps). Inline, not beside it: DVC copies the template's text into dvc_plots/index.html,
so a relative script path would point nowhere.

The template leaves out DVC's `{scripts}` placeholder on purpose: DVC fills it with the CDN
tags. It keeps `{plot_divs}` (the charts) and `{refresh_tag}` (`dvc plots show --open` refresh).

Run it after changing plots/package.json (npm reachable; `npm install --package-lock-only` first
to update the lock): `python plots/build_template.py`. It installs the lock's exact packages
into a temporary folder with `npm ci`; nothing from npm is needed when DVC renders.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "template.html"
LICENSES = HERE / "THIRD_PARTY_LICENSES.txt"
BUNDLES = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- {versions}, inlined by plots/build_template.py
         (licences: plots/THIRD_PARTY_LICENSES.txt in the rewind repository) -->
{scripts}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def inline_script(source: str, name: str) -> str:
    """A `<script>` element holding `source`; refuses code that would end the element early."""
    if "</script" in source.lower():
        raise SystemExit(f"{name}: contains '</script', cannot be inlined as it is")
    return f"<script>/* {name} */\n{source}\n</script>"


def licence_text(modules: Path, lock: dict) -> str:
    """Every installed package's licence file, named with its version: the bundles carry code
    of many of them (vega's carries d3's, vega-embed's vega-themes' and vega-tooltip's)."""
    parts = []
    for key, entry in sorted(lock["packages"].items()):
        if not key:
            continue
        folder = modules.parent / key
        files = sorted(p for p in folder.glob("*") if p.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")))
        body = "\n".join(p.read_text(encoding="utf-8", errors="replace").strip() for p in files)
        name = key.removeprefix("node_modules/")
        kind = entry.get("license", "see below")
        parts.append(f"{name}@{entry['version']} ({kind})\n\n{body or '(no licence file)'}")
    return ("\n\n" + "=" * 78 + "\n\n").join(parts) + "\n"


def build() -> None:
    lock = json.loads((HERE / "package-lock.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("package.json", "package-lock.json", ".npmrc"):
            shutil.copy2(HERE / name, work / name)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=work, check=True)
        modules = work / "node_modules"
        versions = ", ".join(f"{p}@{lock['packages'][f'node_modules/{p}']['version']}" for p in lock_roots(lock))
        scripts = "\n".join(inline_script((modules / b).read_text(encoding="utf-8"), b) for b in BUNDLES)
        page = PAGE.replace("{versions}", versions).replace("{scripts}", scripts)
        for placeholder in ("{scripts}", "{plot_divs}", "{refresh_tag}"):  # DVC replaces each everywhere
            found, expected = page.count(placeholder), 0 if placeholder == "{scripts}" else 1
            if found != expected:
                raise SystemExit(f"template: {placeholder} appears {found} times, expected {expected}")
        TEMPLATE.write_text(page, encoding="utf-8")
        LICENSES.write_text(licence_text(modules, lock), encoding="utf-8")
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size:,} bytes) and {LICENSES}: {versions}")


def lock_roots(lock: dict) -> list[str]:
    """The packages plots/package.json asks for, in its order."""
    return list(lock["packages"][""]["dependencies"])


if __name__ == "__main__":
    build()

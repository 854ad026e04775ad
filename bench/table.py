"""The printed table: one line per figure, median with its spread, the target beside it."""

from collections.abc import Iterator


def _spread(stats: dict) -> str:
    return f"{stats['min']:.3g}–{stats['max']:.3g} (n={stats['n']})"


def rows(results: dict) -> Iterator[tuple[str, str, str, str]]:
    """(figure, median or value, spread, target) for every figure in `results`."""
    for case in results["mask_overhead"]["cases"]:
        shape = "x".join(map(str, case["input_shape"]))
        ratio = case["ratio"]
        yield f"mask overhead {case['model']} {shape}", f"{ratio['median']:.3f}×", _spread(ratio), "≤ 1.05×"
    stage = results["stage_overhead"]
    detail = f"{stage['wall_seconds']:.1f} s / {stage['compute_seconds']:.1f} s, {stage['stages_run']} stages"
    yield "clean repro: wall / training compute", f"{stage['wall_over_compute']:.2f}", detail, "≤ 1.6"
    alone = stage["one_at_a_time"]
    yield "  same, runs one at a time", f"{alone['wall_over_compute']:.2f}", f"{alone['wall_seconds']:.1f} s", ""
    yield from _make_run(stage.get("make_run"))
    yield from _breakdown(stage)
    before = results.get("stage_overhead_before")
    if before is not None:
        detail = f"{before['wall_seconds']:.1f} s / {before['compute_seconds']:.1f} s, {before['stages_run']} stages"
        yield f"before ({before['revision']}): wall / compute", f"{before['wall_over_compute']:.2f}", detail, ""
        yield from _breakdown(before)
    noop = results["noop"]["wall_seconds"]
    yield "no-op repro", f"{noop['median']:.2f} s", _spread(noop), "< 3 s"
    inc = results["incremental"]
    yield (
        f"incremental ({inc['change']})",
        f"{inc['ratio_to_full']:.2f}× of full",
        f"{inc['stages_rerun']}/{inc['stages_total']} stages, {inc['wall_seconds']:.1f} s",
        "",
    )
    yield from _imports(results.get("imports"))
    yield from _parallel(results["parallel"])
    mem = results["memory"]
    yield "peak RSS, largest stage", f"{mem['peak_rss_mib']:.0f} MiB", mem["largest_stage"], ""
    roof = results["roofline"]
    ours = roof["ours_samples_per_second"]["median"]
    ratio = roof["ratio"]
    yield f"our loop / plain loop ({roof['model']})", f"{ratio['median']:.3f}×", _spread(ratio), "≥ 0.95×"
    yield "  our loop throughput", f"{ours:.0f} samples/s", _spread(roof["ours_samples_per_second"]), ""
    yield from _portable(results.get("portable_kernels"))


def _make_run(warm: dict | None) -> Iterator[tuple[str, str, str, str]]:
    """The clean repro as `make run` starts it, under the warm stage server."""
    if warm is None:  # results written before the figure existed
        return
    same = "same outputs" if warm["same_outputs_as_dvc_repro"] else "OUTPUTS DIFFER from dvc repro"
    detail = f"{warm['wall_seconds']:.1f} s, {same}, stage processes ≤ {warm['peak_stage_process_rss_mib']:.0f} MiB"
    yield "  make run (warm stage server)", f"{warm['wall_over_compute']:.2f}", detail, "≤ 1.6"


def _imports(section: dict | None) -> Iterator[tuple[str, str, str, str]]:
    """Per stage module: its imports as it runs, torch's share, and any costly module it does not use."""
    if section is None:  # results written before the figure existed
        return
    for module, stage in section.items():
        total, torch = stage["import_seconds"]["median"], stage["torch_seconds"]["median"]
        largest = stage["largest_other_packages"].items()
        others = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in largest)
        unwanted = f"; unused: {', '.join(stage['unwanted'])}" if stage["unwanted"] else ""
        yield f"imports of {module}", f"{total:.2f} s", f"torch {torch:.2f} s; {others}{unwanted}", "nothing unused"


def _breakdown(stage: dict) -> Iterator[tuple[str, str, str, str]]:
    for name, seconds in stage["breakdown_seconds"].items():
        yield f"  {name}", f"{seconds:.1f} s", f"{seconds / stage['wall_seconds']:.1%} of the wall", ""


def _portable(section: dict | None) -> Iterator[tuple[str, str, str, str]]:
    """Portable kernels (the stages' pins, oneDNN off) against native ones, per training epoch."""
    if section is None:  # results written before the figure existed
        return
    for case in section["cases"]:
        shape = "x".join(map(str, case["input_shape"]))
        ratio = case["ratio"]
        figure = f"portable / native kernels, {case['model']} {shape} epoch"
        yield figure, f"{ratio['median']:.3f}×", _spread(ratio), ""
        kernels = case["kernels"]
        native, portable = (case[f"{side}_epoch_seconds"]["median"] for side in ("native", "portable"))
        sides = f"{kernels['native']['cpu_capability']} + oneDNN → {kernels['portable']['cpu_capability']}"
        yield "  epoch seconds native → portable", f"{native:.3g} → {portable:.3g} s", sides, ""


def _parallel(par: dict) -> Iterator[tuple[str, str, str, str]]:
    spread = f"{par['sequential_wall_seconds']:.1f} s → {par['parallel_wall_seconds']:.1f} s, {par['stages']} stages"
    yield "Prefect flow speed-up over dvc repro", f"{par['speedup']:.2f}×", spread, ""
    cpu = "dvc repro wall / (flow CPU seconds / cores)"
    yield "  most its CPU work allows", f"{par['speedup_bound']:.2f}×", cpu, ""


def render(results: dict) -> str:
    """A plain-text table of every figure."""
    lines = list(rows(results))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    header = ("figure", "median", "spread / detail", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    out = [header, tuple("-" * w for w in widths), *lines]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in out)

"""``report``: merge latency reports from several devices and variants into one table and plot."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import SensiEdgeError
from .latency_report import LatencyReport, LatencyRow, read_latency_report


def load_reports(paths: list[Path]) -> list[LatencyReport]:
    return [read_latency_report(Path(p)) for p in paths]


def rows(reports: list[LatencyReport]) -> list[tuple[str, LatencyRow]]:
    """Every row of every report, with the device it was measured on."""
    return [(r.device, row) for r in reports for row in r.rows]


def merge(paths: list[Path], output: Path, overwrite: bool = False) -> tuple[Path, Path]:
    """OUTPUT.md (one table) and OUTPUT.png (latency vs metric, marker area ~ file size)."""
    from .outputs import MARK, check_writable, write_text_atomic

    if not paths:
        raise SensiEdgeError("give at least one report.json")
    output = Path(output)
    if output.suffix in (".md", ".png"):
        output = output.with_suffix("")  # "merged.md" means the pair merged.md / merged.png
    md, png = output.with_name(output.name + ".md"), output.with_name(output.name + ".png")
    check_writable([md, png], overwrite)
    table = rows(load_reports(paths))
    lines = ["| device | variant | kind | threads | seq | median ms | p90 ms | speedup | MB | metric |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for device, t in sorted(table, key=lambda dt: (dt[0], dt[1].threads, dt[1].median_ms)):
        metric = f"{t.metric_name} {t.metric_value:.2f}" if t.metric_name else "-"
        speed = f"{t.speedup_vs_baseline:.2f}x" if t.speedup_vs_baseline else "-"
        seq = f"real {t.mean_tokens:.0f} tok" if t.real_inputs else str(t.seq_len)
        lines.append(f"| {device} | {t.variant} | {t.kind_label} | {t.threads} | {seq} | {t.median_ms:.2f} | "
                     f"{t.p90_ms:.2f} | {speed} | {t.size_bytes / 1e6:.1f} | {metric} |")
    tmp_png = png.with_name(f".{png.name}.tmp.png")
    _plot(table, tmp_png)
    write_text_atomic(md, "# Merged latency reports\n\n" + "\n".join(lines) + "\n\n" + MARK + "\n")
    os.replace(tmp_png, png)
    return md, png


def _plot(table: list[tuple[str, LatencyRow]], path: Path) -> None:
    """Left: latency vs file size (always known). Right: latency vs task metric (where known).

    Colour = runtime and precision, marker = device; names are written only when few points fit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    kinds = sorted({t.kind_label for _, t in table})
    devices = sorted({device for device, _ in table})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>"
    annotate = len(table) <= 12
    for device, t in table:
        style = {"color": colors[kinds.index(t.kind_label) % len(colors)],
                 "marker": markers[devices.index(device) % len(markers)], "alpha": 0.7}
        for ax, y in zip(axes, (t.size_bytes / 1e6, t.metric_value)):
            if y is None:
                continue  # no metric known for this variant: size panel only
            ax.scatter([t.median_ms], [y], **style)
            if annotate:
                ax.annotate(f"{t.variant} ({t.threads}t)", (t.median_ms, y), fontsize=6, alpha=0.8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[i % len(colors)], marker="o", ls="", label=k) for i, k in enumerate(kinds)]
    handles += [Line2D([], [], color="gray", marker=markers[i % len(markers)], ls="", label=d) for i, d in enumerate(devices)]
    axes[0].legend(handles=handles, fontsize=7)
    axes[0].set_ylabel("file size, MB")
    axes[1].set_ylabel("task metric (variants with a known metric)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("median latency, ms (log)")
    fig.suptitle("sensi-edge: latency vs size vs metric", fontsize=10)
    fig.tight_layout()
    from .outputs import PNG_SOFTWARE

    fig.savefig(path, dpi=120, metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)

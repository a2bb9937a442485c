"""``report``: merge latency reports from several devices and variants into one table and plot."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .bundle_runtime import REPORT_SCHEMA
from .errors import SensiEdgeError, first_line


def load_reports(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
        except FileNotFoundError:
            raise SensiEdgeError(f"report {p} does not exist; pass report.json files from bench or run.py") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SensiEdgeError(f"cannot read report {p} ({first_line(exc, 100)}); pass report.json files from bench "
                                 "or run.py") from None
        if not isinstance(r, dict) or r.get("schema") != REPORT_SCHEMA:
            schema = r.get("schema") if isinstance(r, dict) else type(r).__name__
            raise SensiEdgeError(f"{p} is not a sensi-edge latency report (schema {schema!r}); pass report.json files "
                                 "from bench or run.py")
        _check_report(p, r)
        out.append(r)
    return out


_ROW_NUMBERS = ("median_ms", "p90_ms", "threads", "seq_len", "size_bytes")


def _check_report(path: Path, r: dict) -> None:
    """The fields the table and plot read, with their types: a hand-edited report fails here, by name."""
    def bad(what: str) -> SensiEdgeError:
        return SensiEdgeError(f"{path}: {what}; regenerate it with bench or run.py")

    cpu = (r.get("environment") or {}).get("cpu") if isinstance(r.get("environment"), dict) else None
    if not isinstance(cpu, dict) or not all(isinstance(cpu.get(k), str) for k in ("model", "machine")):
        raise bad("environment.cpu.model / .machine missing")
    results = r.get("results")
    if not isinstance(results, list) or not results:
        raise bad("no results")
    for i, row in enumerate(results):
        if not isinstance(row, dict):
            raise bad(f"results[{i}] is not an object")
        for key in _ROW_NUMBERS:
            if key == "seq_len" and row.get("inputs") == "real":
                key = "mean_tokens"  # real inputs have their own lengths
            v = row.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v == v:
                raise bad(f"results[{i}].{key} is {v!r}, not a number")
        for key in ("variant", "kind"):
            if not isinstance(row.get(key), str):
                raise bad(f"results[{i}].{key} is {row.get(key)!r}, not a string")
        m = row.get("metric")
        if m is not None and not (isinstance(m, dict) and isinstance(m.get("name"), str)
                                  and isinstance(m.get("value"), (int, float))):
            raise bad(f"results[{i}].metric is {m!r}; expected {{'name': ..., 'value': number}}")
        s = row.get("speedup_vs_baseline")
        if s is not None and not isinstance(s, (int, float)):
            raise bad(f"results[{i}].speedup_vs_baseline is {s!r}, not a number")


def rows(reports: list[dict]) -> list[dict]:
    merged = []
    for r in reports:
        cpu = r["environment"]["cpu"]
        device = f"{cpu['model']} ({cpu['machine']})"
        for res in r["results"]:
            merged.append({"device": device, **res})
    return merged


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
    for t in sorted(table, key=lambda t: (t["device"], t["threads"], t["median_ms"])):
        metric = f"{t['metric']['name']} {t['metric']['value']:.2f}" if t.get("metric") else "-"
        speed = f"{t['speedup_vs_baseline']:.2f}x" if t.get("speedup_vs_baseline") else "-"
        lines.append(f"| {t['device']} | {t['variant']} | {t['kind']} {t.get('precision', '')} | {t['threads']} | "
                     f"{t['seq_len'] or 'real ' + format(t.get('mean_tokens', 0), '.0f') + ' tok'} | {t['median_ms']:.2f} | {t['p90_ms']:.2f} | {speed} | {t['size_bytes'] / 1e6:.1f} | {metric} |")
    tmp_png = png.with_name(f".{png.name}.tmp.png")
    _plot(table, tmp_png)
    write_text_atomic(md, "# Merged latency reports\n\n" + "\n".join(lines) + "\n\n" + MARK + "\n")
    os.replace(tmp_png, png)
    return md, png


def _plot(table: list[dict], path: Path) -> None:
    """Left: latency vs file size (always known). Right: latency vs task metric (where known).

    Colour = runtime and precision, marker = device; names are written only when few points fit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    kinds = sorted({f"{t['kind']} {t.get('precision', '')}".strip() for t in table})
    devices = sorted({t["device"] for t in table})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>"
    annotate = len(table) <= 12
    for t in table:
        kind = f"{t['kind']} {t.get('precision', '')}".strip()
        style = {"color": colors[kinds.index(kind) % len(colors)], "marker": markers[devices.index(t["device"]) % len(markers)],
                 "alpha": 0.7}
        for ax, key in zip(axes, ("size", "metric")):
            if key == "metric" and not t.get("metric"):
                continue
            y = t["size_bytes"] / 1e6 if key == "size" else t["metric"]["value"]
            ax.scatter([t["median_ms"]], [y], **style)
            if annotate:
                ax.annotate(f"{t['variant']} ({t['threads']}t)", (t["median_ms"], y), fontsize=6, alpha=0.8)
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

"""The self-contained HTML report (``--sdperf-html``, ``sdperf report``).

One file, no external resources: the charts (matplotlib, see plots.py) and the images (the
variant's, the reference's, a difference heat map) are embedded as ``data:`` URIs. Sections:
verdict summary, results table, speedup/memory/trade-off charts, image grid, trends over the
recorded history with change points, machine and package versions.

Usage::

    write_html(Path("report.html"), state.header(), state.records, "torch-fp32", history_points)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .measure.memory import gated_figure
from .measure.similarity import PSNR_IDENTICAL
from .report import labels, noise_sentence, peak_lines, rows, speedups
from .results import Record
from .session import REFERENCE_VARIANT
from .workload import Thresholds

if TYPE_CHECKING:
    import numpy as np

    from .history import HistoryPoint

HEADERS = ("test", "variant", "p50", "p90", "speedup", "img/s", "GFLOP/s", "% peak", "peak mem",
           "model size", "SSIM", "PSNR", "vs baseline (interval)", "sees", "verdict", "reason")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;
 margin:0 auto;max-width:1340px;padding:18px 24px;color:#1c2430;background:#fafbfc}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #dde3ea;
 padding-bottom:4px} .sub{color:#5b6775;margin-bottom:10px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001}
th,td{padding:5px 9px;border-bottom:1px solid #e3e8ee;text-align:right;vertical-align:top;
 white-space:nowrap}
th{background:#eef2f6;font-weight:600;white-space:nowrap} td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#f7f9fb} td.reason{white-space:normal;max-width:420px;font-size:12px;color:#7a2121}
.pill{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.pass,.updated{background:#2e7d32}.regression,.error,.hung,.timeout,.crash{background:#c62828}.inconclusive{background:#ef6c00}
.recorded{background:#1565c0}.other{background:#607d8b}
.badges span{margin-right:8px;font-size:14px} .charts{display:flex;flex-wrap:wrap;gap:12px}
.charts img{background:#fff;box-shadow:0 1px 2px #0001;max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:12px}
.card{background:#fff;box-shadow:0 1px 2px #0001;padding:10px} .card h3{font-size:14px;margin:0 0 6px}
.trio{display:flex;gap:8px} .trio figure{margin:0;text-align:center;font-size:11px;color:#5b6775}
.trio img{width:120px;height:120px;image-rendering:pixelated;border:1px solid #d0d7de;display:block}
.missing{width:120px;height:120px;border:1px dashed #b0b8c0;display:flex;align-items:center;
 justify-content:center;font-size:11px;color:#8a96a3}
ul.steps{margin:6px 0;padding-left:20px} .kv td{text-align:left;font-size:13px;white-space:normal}
"""


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for embedding."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, extra: str = "") -> str:
    return f'<img src="{data_uri(png)}" alt="{escape(alt)}"{extra}>'


def _pill(verdict: str) -> str:
    known = {"pass", "updated", "regression", "error", "inconclusive", "recorded", "hung",
             "timeout", "crash"}
    return f'<span class="pill {verdict if verdict in known else "other"}">{escape(verdict)}</span>'


def short_id(test_id: str) -> str:
    """The test name and parameters, without the file path."""
    return test_id.rsplit("::", 1)[-1]


def _summary(header: Mapping[str, Any], records: Sequence[Record], generated: str) -> str:
    counts = Counter(r.verdict for r in records)
    badges = " ".join(f"<span>{_pill(v)} {n}</span>" for v, n in sorted(counts.items()))
    key = escape(str((header.get("machine") or {}).get("key", "unknown machine")))
    note = header.get("model_note")
    note_html = f"<div class='sub' id='model-note'><b>Note:</b> {escape(str(note))}</div>" if note else ""
    noise = noise_sentence(records)  # why a night sampled longer and saw less
    noise_html = f"<div class='sub' id='noise'>{escape(noise)}</div>" if noise else ""
    return (f"<h1>sdperf report</h1><div class='sub'>{len(records)} results on <b>{key}</b>, "
            f"generated {escape(generated)}</div>{note_html}{noise_html}<div class='badges'>{badges}</div>")


def _sees_cell(r: Record, sees: str) -> str:
    """The ``sees`` cell, its floor in the title; a floor over the limit shown in the cell."""
    floor = r.detectable_floor_pct
    if floor is None:
        return f"<td>{escape(sees)}</td>"
    title = (f"floor {floor:.1f}%: the smallest slowdown any number of rounds could see against "
             f"this baseline")
    shown = f"{sees} (floor {floor:.0f}%)" if r.floor_over_limit else sees
    return f"<td title='{escape(title)}'>{escape(shown)}</td>"


def _table(records: Sequence[Record], reference: str) -> str:
    cells = rows(records, reference)
    body = []
    for r, row in zip(records, cells, strict=True):
        variant, p50, up, ips, gflops, pct, mem, size, ssim, psnr, vs_base, sees, _ = row
        psnr = "identical" if r.psnr is not None and r.psnr >= PSNR_IDENTICAL else psnr
        p90 = f"{r.p90_s:.3f} s" if r.p90_s is not None else "-"
        tds = [f"<td class='l'>{escape(short_id(r.test_id))}</td>", f"<td class='l'><b>{escape(variant)}</b></td>"]
        tds += [f"<td>{escape(c)}</td>" for c in (p50, p90, up, ips, gflops, pct, mem, size, ssim, psnr,
                                                     vs_base)]
        tds.append(_sees_cell(r, sees))
        tds += [f"<td class='l'>{_pill(r.verdict)}</td>", f"<td class='l reason'>{escape(r.reason)}</td>"]
        body.append("<tr>" + "".join(tds) + "</tr>")
    head = "".join(f"<th class='{'l' if h in ('test', 'variant', 'verdict', 'reason') else ''}'>{h}</th>"
                   for h in HEADERS)
    flops = "".join(f"<br>{escape(line)}" for line in peak_lines(records))
    return (f"<h2>Results</h2><div class='sub'>speedup: the reference variant's p50 "
            f"({escape(reference)}, same model and workload) over each variant's p50; GFLOP/s: "
            f"one UNet call's counted FLOPs over the median denoising step's seconds{flops}</div>"
            f"<table id='results'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _memory_mib(r: Record) -> float | None:
    figure = gated_figure(r.memory)
    return figure[1] / 2**20 if figure else None


def _charts(records: Sequence[Record], reference: str) -> str:
    from . import plots

    if not records:
        return ""
    ups = speedups(records, reference)
    names = labels(records)
    verdicts = [r.verdict for r in records]
    speed = [ups.get(r.test_id) for r in records]
    figures = [
        plots.bar_chart(names, speed, verdicts, f"speedup against {reference}", "x", "{:.2f}x", 1.0),
        plots.bar_chart(names, [_memory_mib(r) for r in records], verdicts, "peak memory",
                        "MiB", "{:.0f}"),
        plots.tradeoff_scatter(names, speed, [r.ssim for r in records], verdicts,
                               Thresholds().min_ssim),
        plots.bar_chart(names, [r.ratio for r in records], verdicts,
                        "latency against the baseline (interval)", "x", "{:.2f}x", 1.0,
                        [r.ratio_interval for r in records]),
    ]
    alts = ("speedup per variant", "peak memory per variant", "speedup against SSIM",
            "latency over the baseline per variant, with intervals")
    imgs = "".join(_img(png, alt, " class='chart'") for png, alt in zip(figures, alts, strict=True))
    return ("<h2>Speed, memory and quality</h2><div class='sub'>bars and points are coloured by "
            "the test's verdict: green pass, red regression (of any metric), orange inconclusive, "
            f"blue first recording</div><div class='charts'>{imgs}</div>")


def _sweeps(records: Sequence[Record]) -> str:
    """The latency-capped sweeps' curves (records with ``info["sweep"]``), one line per test."""
    from . import plots
    from .sweep import SweepResult

    found = [(name, SweepResult.from_dict(r.info["sweep"]))
             for name, r in zip(labels(records), records, strict=True) if r.info.get("sweep")]
    if not found:
        return ""
    curves = {name: [(p.value, p.latency_s, p.images_per_s) for p in res.points] for name, res in found}
    knees = {name: (res.knee.value if res.knee else None) for name, res in found}
    caps = {name: res.sweep.cap_of(res.points[0]) for name, res in found if res.points}
    settings = ", ".join(dict.fromkeys(res.sweep.setting for _, res in found))
    png = plots.sweep_chart(curves, knees, caps, settings)
    lines = "".join(f"<li>{escape(name)}: {escape(res.summary())}</li>" for name, res in found)
    chart = _img(png, "throughput against p90 latency per sweep", " class='chart'")
    return f"<h2>Latency-capped sweeps</h2>{chart}<ul>{lines}</ul>"


def _load(path: str) -> np.ndarray | None:
    from .measure.similarity import load_png

    try:
        return load_png(Path(path))
    except (OSError, ValueError):
        return None


def _figure(png: bytes | None, caption: str) -> str:
    inner = _img(png, caption) if png else "<div class='missing'>not available</div>"
    return f"<figure>{inner}<figcaption>{escape(caption)}</figcaption></figure>"


def _card(r: Record) -> str:
    from . import plots

    got_path = r.images[0] if r.images else None
    ref_path = r.reference_images[0] if r.reference_images else None
    got = _load(got_path) if got_path else None
    ref = _load(ref_path) if ref_path else None
    heat, caption = None, "difference"
    if got is not None and ref is not None and got.shape == ref.shape:
        heat, peak = plots.diff_heatmap(got, ref)
        caption = f"|difference|, max {peak}/255"
    got_png = Path(got_path).read_bytes() if got is not None and got_path else None
    ref_png = Path(ref_path).read_bytes() if ref is not None and ref_path else None
    sim = ""
    if r.ssim is not None and r.psnr is not None:
        sim = f"SSIM {r.ssim:.4f}, " + ("identical" if r.psnr >= PSNR_IDENTICAL else f"PSNR {r.psnr:.1f} dB")
    return (f"<div class='card'><h3>{escape(r.variant)} {_pill(r.verdict)} "
            f"<span class='sub'>{escape(sim)}</span></h3><div class='trio'>"
            f"{_figure(got_png, r.variant)}{_figure(ref_png, 'reference')}{_figure(heat, caption)}"
            f"</div></div>")


def _images(records: Sequence[Record]) -> str:
    cards = [_card(r) for r in records if r.images or r.reference_images]
    if not cards:
        return ""
    return ("<h2>Images against the reference</h2><div class='grid' id='images'>"
            + "".join(cards) + "</div>")


def trend_labels(points: Sequence[HistoryPoint]) -> dict[str, str]:
    """test id -> its variant name, or the short test id where a variant has several tests."""
    tests_of = Counter(v for v, _ in {(p.variant, p.test_id) for p in points})
    return {p.test_id: p.variant if tests_of[p.variant] == 1 else short_id(p.test_id) for p in points}


def _trend_section(history: Sequence[HistoryPoint], records: Sequence[Record]) -> str:
    from . import plots
    from .changepoints import steps as find_steps
    from .history import METRICS, series

    current = {r.test_id for r in records}
    points = [p for p in history if not current or p.test_id in current]
    labels = trend_labels(points)
    keys = sorted({p.machine_key for p in points})

    def label(test_id: str, key: str) -> str:  # each machine key its own line
        return f"{labels[test_id]} @ {key}" if len(keys) > 1 else labels[test_id]

    order = {run: i + 1 for i, run in enumerate(sorted({p.run_id for p in points}))}
    charts, notes = [], []
    for metric, title in METRICS.items():
        lines = {label(t, k): pts for (t, k), pts in series(points, metric)}
        found = {label: find_steps([p.value(metric) or 0.0 for p in pts]) for label, pts in lines.items()}
        cuts = {label: [s.index for s in st] for label, st in found.items()}
        charts.append(_img(plots.trend_chart(lines, metric, title, cuts), f"trend of {title}"))
        notes += [f"{label} {title}: step at run {order[lines[label][s.index].run_id]} "
                  f"({lines[label][s.index].when:%Y-%m-%d %H:%M}): {s.before:.4g} to {s.after:.4g} "
                  f"({s.change_pct:+.0f}%)" for label, st in found.items() for s in st]
    found_text = ("<ul class='steps'>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
                  if notes else "<div class='sub'>no change points found</div>")
    where = "on this machine" if len(keys) < 2 else f"on {len(keys)} machine keys ({', '.join(keys)}), each its own line"
    return (f"<h2>History</h2><div class='sub'>{len(order)} recorded runs {where}; change points "
            f"(PELT step detection) marked with red rings</div><div class='charts' id='trends'>"
            f"{''.join(charts)}</div>{found_text}")


def _kv_table(title: str, items: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th class='l'>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                   for k, v in items.items())
    return f"<div><h3>{escape(title)}</h3><table class='kv'>{body}</table></div>"


def peak_items(peak: Mapping[str, Any]) -> dict[str, str]:
    """The machine's peak FLOP/s as label -> 'figure (basis)', for the machine section."""
    items = {}
    theo = peak.get("theoretical")
    items["theoretical (CPU, fp32)"] = (f"{theo['gflops_per_s']:.1f} GFLOP/s ({theo['basis']})" if theo
                                        else "not determined")
    if theo:
        from .measure.peak import NATIVE_TYPES

        for dtype, figure in (theo.get("by_type") or {}).items():
            if dtype in NATIVE_TYPES:
                factor = figure / theo["gflops_per_s"] if theo["gflops_per_s"] else 0.0
                how = next((text for _, f, text in NATIVE_TYPES[dtype] if f == round(factor)), "")
                items[f"theoretical (CPU, {dtype})"] = (
                    f"{figure:.1f} G{'OP' if dtype == 'int8' else 'FLOP'}/s "
                    f"(fp32's x {factor:g}: {how})")
    for dtype, gemm in (peak.get("measured") or {}).items():
        items[f"measured GEMM ({gemm['device']}, {dtype})"] = (
            f"{gemm['gflops_per_s']:.1f} GFLOP/s ({gemm['basis']})")
    return items


def _environment(header: Mapping[str, Any]) -> str:
    machine = dict(header.get("machine") or {})
    env = dict(header.get("environment") or {})
    peak = _kv_table("peak FLOP/s", peak_items(header["peak"])) if header.get("peak") else ""
    return ("<h2>Machine and packages</h2><div class='charts' id='environment'>"
            + _kv_table("machine", machine) + peak + _kv_table("package versions", env) + "</div>")


def render(header: Mapping[str, Any], records: Sequence[Record], reference: str = REFERENCE_VARIANT,
           history: Sequence[HistoryPoint] | None = None, generated: str | None = None) -> str:
    """The whole report as one HTML string."""
    when = generated or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts: Iterable[str] = (
        _summary(header, records, when), _table(records, reference), _charts(records, reference),
        _sweeps(records), _images(records), _trend_section(history, records) if history else "", _environment(header),
    )
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>sdperf report</title><style>{CSS}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_html(path: Path, header: Mapping[str, Any], records: Sequence[Record],
               reference: str = REFERENCE_VARIANT, history: Sequence[HistoryPoint] | None = None) -> None:
    """Render and write the report atomically."""
    from .atomic import atomic_write_text

    atomic_write_text(path, render(header, records, reference, history))


def read_results(path: Path) -> tuple[dict[str, Any], list[Record], str]:
    """(header, records, reference variant) of a ``--sdperf-json`` file.

    The reference is the variant whose stored speedup is exactly 1 (its own base), else
    torch-fp32. Raises ValueError naming the file when it cannot be used.
    """
    try:
        doc = json.loads(path.read_text())
        header = {k: doc[k] for k in ("machine", "environment", "peak", "model_note") if k in doc}
        records = [Record.from_dict(item) for item in doc["results"]]
        base = [i["variant"] for i in doc["results"] if i.get("speedup_vs_fp32") == 1.0]
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an sdperf results file (--sdperf-json): {exc!r}") from None
    return header, records, base[0] if base else REFERENCE_VARIANT

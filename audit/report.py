"""Self-contained HTML reports (no network: CSS inline, plots embedded as PNG data URIs).

:class:`HtmlReport` is a small builder — headings, paragraphs, tables, figures, key/value
lists, collapsible details — shared by the scan report and the audit reports.
:func:`write_scan_report` renders a scan's ``results.jsonl`` and summary.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "HtmlReport",
    "fmt_value",
    "gap_sentence",
    "write_fairness_report",
    "write_scan_report",
]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#57606a}.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px}
.heatmaps{display:flex;flex-wrap:wrap;gap:12px}.heatmap{margin:0;max-width:300px}
.heatmap img{max-width:300px;border:1px solid #d0d7de}
.heatmap figcaption{font-size:12px;color:#57606a}
.v-synthetic{background:#cf222e;color:#fff}.v-likely-synthetic{background:#fb8f44}
.v-needs-review{background:#8250df;color:#fff}.v-likely-authentic{background:#2da44e;color:#fff}
.v-no-evidence{background:#d0d7de}.v-error{background:#24292f;color:#fff}
figure{display:inline-block;margin:.5em 1em .5em 0}figure img{max-width:520px;border:1px solid #eee}
details{margin:.3em 0}summary{cursor:pointer}code{background:#f6f8fa;padding:0 3px}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.5em .8em;border-radius:4px}
"""


class HtmlReport:
    """Accumulate sections, then :meth:`write` one standalone page."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        if subtitle:
            self.parts.append(f'<p class="muted">{html.escape(subtitle)}</p>')

    def heading(self, text: str, anchor: str | None = None) -> HtmlReport:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{a}>{html.escape(text)}</h2>")
        return self

    def paragraph(self, text: str, *, cls: str | None = None) -> HtmlReport:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")
        return self

    def raw(self, fragment: str) -> HtmlReport:
        self.parts.append(fragment)
        return self

    def table(
        self, header: Sequence[str], rows: Iterable[Sequence[Any]], *, raw_cols: Sequence[int] = ()
    ) -> HtmlReport:
        out = [
            "<table><thead><tr>",
            *(f"<th>{html.escape(str(h))}</th>" for h in header),
            "</tr></thead><tbody>",
        ]
        for row in rows:
            out.append("<tr>")
            for i, cell in enumerate(row):
                num = isinstance(cell, (int, float)) and not isinstance(cell, bool)
                text = fmt_value(cell)
                body = text if i in raw_cols else html.escape(text)
                out.append(f'<td class="num">{body}</td>' if num else f"<td>{body}</td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        self.parts.append("".join(out))
        return self

    def kv(self, data: Mapping[str, Any]) -> HtmlReport:
        return self.table(["", ""], [(k, v) for k, v in data.items()])

    def figure(self, fig: Any, caption: str = "") -> HtmlReport:
        """Embed a matplotlib figure as a PNG data URI (and close it)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        cap = f"<figcaption class='muted'>{html.escape(caption)}</figcaption>" if caption else ""
        img = f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        self.parts.append(f"<figure>{img}{cap}</figure>")
        return self

    def details(self, summary: str, fragment: str) -> HtmlReport:
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>{fragment}</details>")
        return self

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        tmp = p.with_name(p.name + ".part")
        tmp.write_text(self.render(), encoding="utf-8")
        os.replace(tmp, p)
        return p


def fmt_value(v: Any, spec: str = ".4g") -> str:
    """A number for people: floats to ``spec``, None as n/a."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def pill(verdict: str) -> str:
    return f'<span class="pill v-{html.escape(verdict)}">{html.escape(verdict)}</span>'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_scan_report(results: Path, summary: Any, path: Path, *, top: int = 200) -> Path:
    """The scan's page: counts, score histograms, files to look at first, then details."""
    from deepaudit.audit.results import iter_results, top_for_review
    from deepaudit.audit.verdict import GLOSSARY

    s = summary.to_json()
    rep = HtmlReport(
        "deepaudit scan report",
        f"{s['files']} files · {s['errors']} unreadable · {s['scanned_now']} scanned in this run "
        f"({s['files_per_s'] or '-'} files/s) · {s['skipped_unchanged']} unchanged since the "
        "last run",
    )
    if summary.attention:
        rep.raw(
            f'<p class="warn">{summary.attention} files need attention: synthetic or likely '
            "synthetic, conflicting evidence, or unreadable.</p>"
        )
    rep.heading("Verdicts", "verdicts")
    rep.table(
        ["verdict", "files"], [(pill(v), n) for v, n in s["by_verdict"].items() if n], raw_cols=(0,)
    )
    rep.paragraph(
        " ".join(f"{v}: {text}." for v, text in GLOSSARY.items() if v != "error"), cls="muted"
    )
    if s["detectors"]:
        rep.heading("Detectors", "detectors")
        fusion = s.get("fusion") or {}
        band = fusion.get("band") or [None, None]
        rep.paragraph(
            f"Scores are fused by {fusion.get('rule', 'mean-logit')} (the mean of the calibrated "
            f"log-odds, unless max) and read against the uncertain band {band[0]}–{band[1]}: "
            "over it is evidence of synthesis, inside it no evidence either way. Scores of "
            "detectors on media unlike their training domain mean little; calibrate them on "
            "your own data (deepaudit detectors calibrate).",
            cls="muted",
        )
        rows = []
        for name, d in s["detectors"].items():
            licence = html.escape(str(d.get("licence")))
            if d.get("non_commercial"):
                licence += ' <b class="warn">non-commercial</b>'
            cal = d.get("calibration")
            cal_text = (
                f"{cal['method']} on {cal['fitted_on'].get('data', '?')} "
                f"(ECE {cal.get('ece_before')} → {cal.get('ece_after')})"
                if cal
                else "not calibrated"
            )
            made = "<br>".join(
                f"{html.escape(str(i.get('file')))} sha256 {str(i.get('sha256'))[:16]}…"
                for i in d.get("inputs") or []
            )
            eng = d.get("engine") or {}
            ran = (
                f"{eng.get('engine')} {eng.get('precision')} on {eng.get('device')}" if eng else "-"
            )
            rows.append(
                (
                    name,
                    str(d.get("detector")),
                    ran,
                    licence,
                    str(d.get("paper") or d.get("source") or ""),
                    str(d.get("training_domain")),
                    cal_text,
                    made or "-",
                )
            )
        rep.table(
            [
                "detector",
                "kind",
                "licence",
                "paper / source",
                "trained on",
                "calibration",
                "made from",
            ],
            rows,
            raw_cols=(2, 6),
        )
    rep.heading("Provenance (C2PA)", "provenance")
    rep.table(["state", "files"], sorted(s["by_provenance_state"].items(), key=lambda kv: -kv[1]))
    # score histograms per detector (streamed)
    scores: dict[str, list[float]] = {}
    for rec in iter_results(results):
        for name, sc in (rec.get("scores") or {}).items():
            if sc.get("score") is not None:
                scores.setdefault(name, []).append(float(sc["score"]))
    if scores:
        plt = _plt()
        rep.heading("Detector scores", "scores")
        for name, vals in scores.items():
            fig, ax = plt.subplots(figsize=(5.2, 2.6))
            ax.hist(vals, bins=30, range=(0, 1), color="tab:blue")
            thr = (s["detectors"].get(name) or {}).get("threshold")
            if thr is not None:
                ax.axvline(thr, color="k", ls="--", lw=1, label=f"threshold {thr:.3f}")
            band = (s.get("fusion") or {}).get("band")
            if band:
                ax.axvspan(band[0], band[1], color="0.85", zorder=0, label="uncertain band")
            if thr is not None or band:
                ax.legend(fontsize=8)
            ax.set(xlabel="P(synthetic)", ylabel="files", title=name)
            rep.figure(fig, f"{name}: score distribution over {len(vals)} files")
    first = top_for_review(results, top)
    rep.heading(f"Look at these first ({len(first)})", "review")
    names = list(s["detectors"])
    rows = []
    for rec in first:
        reasons = "; ".join(r["text"] for r in rec.get("reasons", [])[:3])
        if "error" in rec:
            reasons = rec["error"]["message"]
        sc = rec.get("scores") or {}
        per = [fmt_value((sc.get(n) or {}).get("score"), ".3f") for n in names]
        fused = (rec.get("fused") or {}).get("score")
        rows.append(
            (
                pill(rec.get("verdict", "error")),
                html.escape(rec["path"]),
                *([fmt_value(fused, ".3f")] if names else []),
                *per,
                html.escape(reasons),
            )
        )
    header = ["verdict", "file", *(["fused"] if names else []), *names, "why"]
    rep.table(header, rows, raw_cols=(0, 1, len(header) - 1))
    _localization_section(rep, first, results.parent)
    rep.heading("Every file", "files")
    for shown, rec in enumerate(iter_results(results)):
        if shown >= 2000:
            rep.paragraph("… more in results.jsonl", cls="muted")
            break
        detail = {k: v for k, v in rec.items() if k not in ("reasons",)}
        body = f"<pre>{html.escape(json.dumps(detail, indent=1, default=str)[:6000])}</pre>"
        rep.details(f"{rec.get('verdict', 'error')} — {rec['path']}", body)
    if s["walk_errors"]:
        rep.heading("Paths that could not be walked")
        rep.table(["problem"], [(e,) for e in s["walk_errors"][:500]])
    return rep.write(path)


def _localization_section(rep: HtmlReport, first: list[dict[str, Any]], out: Path) -> None:
    """Heatmaps of the flagged images a localisation detector mapped (embedded, so the page
    stays one file), with their regions."""
    import base64

    shown = [r for r in first if (r.get("localization") or {}).get("heatmap")][:24]
    if not shown:
        return
    rep.heading(f"Where the flagged images were changed ({len(shown)})", "localization")
    rep.paragraph(
        "Trained localisation maps (red = likely generated; white outlines: over the map "
        "threshold). These are a detector's output, not an explanation of the other "
        "detectors' scores (for that, see deepaudit audit explain).",
        cls="muted",
    )
    cells = []
    for rec in shown:
        loc = rec["localization"]
        try:
            data = (out / loc["heatmap"]).read_bytes()
        except OSError:
            continue
        boxes = ", ".join(
            f"{r['box']} ({r['mean_score']:.2f})" for r in (loc.get("regions") or [])[:3]
        )
        cells.append(
            '<figure class="heatmap"><img alt="heatmap" src="data:image/png;base64,'
            + base64.b64encode(data).decode()
            + f'"><figcaption>{html.escape(Path(rec["path"]).name)} — '
            + f"{html.escape(loc['detector'])}, max {loc.get('max', 0):.2f}"
            + (f"; regions {html.escape(boxes)}" if boxes else "")
            + "</figcaption></figure>"
        )
    rep.raw('<div class="heatmaps">' + "".join(cells) + "</div>")


def gap_sentence(rate: str, gap: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """A gap between the worst and best group in words, with its interval and the gap equal
    rates give by chance; True when it may be sampling noise: the interval includes 0, or the
    gap is within the 95th percentile of chance (the two groups were picked as the extremes,
    which the interval alone does not account for)."""
    if not gap:
        return None
    lo, hi = gap["ci95"]
    text = (
        f"{rate.upper()} {gap['worst']} vs {gap['best']}: difference "
        f"{fmt_value(gap['difference'], '.3f')} (95% CI {fmt_value(lo, '.3f')} to "
        f"{fmt_value(hi, '.3f')}; {gap['n_worst']} and {gap['n_best']} items)"
    )
    chance = gap.get("chance")
    by_chance = (
        f" Equal {rate.upper()}s in every group would give a gap of "
        f"{fmt_value(chance['mean'], '.3f')} on average on groups of these sizes (95th "
        f"percentile {fmt_value(chance['p95'], '.3f')})"
        if chance
        else ""
    )
    if gap["ci_includes_0"]:
        text += ": the interval includes 0, so this gap may be sampling noise."
        return text + (by_chance + "." if by_chance else ""), True
    if chance and not gap.get("beyond_chance"):
        # picked as worst and best after looking: the interval alone overstates it
        return (
            text + ": the interval excludes 0, but these two groups were picked as the "
            "extremes." + by_chance + ", so the gap is within what chance gives.",
            True,
        )
    return text + ": the interval excludes 0" + (
        f" and the gap is beyond chance.{by_chance}." if by_chance else "."
    ), False


def write_fairness_report(
    report: Any, out_dir: str | os.PathLike[str], *, data: Any = None, mitigation: Any = None
) -> dict[str, Path]:
    """``fairness.json`` + ``report.html`` (per-group tables, FPR/FNR with CI error bars,
    ROC per group, calibration curve, score histograms). ``data`` (the scored items) adds
    the curves; without it the tables and bars are drawn from the report alone.
    ``mitigation`` (a :class:`~deepaudit.audit.mitigation.MitigationTable`) adds its table."""
    import numpy as np

    from deepaudit.detectors.metrics import roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = report.to_json()
    if mitigation is not None:
        js["mitigation"] = mitigation.to_json()
    (out / "fairness.json").write_text(json.dumps(js, indent=2, default=str) + "\n")
    rep = HtmlReport(
        "deepaudit fairness audit",
        f"threshold {report.threshold:.4f} · attributes {', '.join(report.attributes)} · "
        f"{report.overall.n} items ({report.overall.n_real} real, "
        f"{report.overall.n_synthetic} synthetic)",
    )
    for w in report.warnings[:20]:
        rep.raw(f'<p class="warn">{html.escape(w)}</p>')
    if mitigation is not None:
        from deepaudit.audit.mitigation import mitigation_html

        rep.raw(mitigation_html(js["mitigation"]))
    plt = _plt()
    for key, groups in report.groups.items():
        gap = report.gaps[key]
        rep.heading(f"By {key}", key.replace(" ", ""))
        verdict = (
            "unequal"
            if (gap.get("fpr_max_minus_min") or 0) > 0.05
            or (gap.get("fnr_max_minus_min") or 0) > 0.05
            else "similar"
        )
        rep.paragraph(
            f"Error rates across these groups are {verdict}: "
            f"FPR gap {fmt_value(gap.get('fpr_max_minus_min'))}, "
            f"FNR gap {fmt_value(gap.get('fnr_max_minus_min'))}, "
            f"worst-group AUC {fmt_value(gap.get('worst_group_auc'))} "
            f"({gap.get('worst_group') or 'n/a'})."
        )
        noise = [gap_sentence(r, gap.get(f"{r}_gap")) for r in ("fpr", "fnr")]
        for text, includes_0 in filter(None, noise):
            rep.paragraph(text, cls="warn" if includes_0 else None)
        rows = []
        for g in groups:
            ci = g.ci95

            def with_ci(k: str, g=g, ci=ci) -> str:
                v = g.metrics.get(k)
                lo, hi = ci.get(k, (None, None))
                return (
                    f"{fmt_value(v)} [{fmt_value(lo)}, {fmt_value(hi)}]"
                    if lo is not None
                    else fmt_value(v)
                )

            rows.append(
                (
                    g.name,
                    g.n,
                    g.n_real,
                    g.n_synthetic,
                    with_ci("auc"),
                    fmt_value(g.metrics.get("ap")),
                    fmt_value(g.metrics.get("eer")),
                    with_ci("fpr"),
                    with_ci("fnr"),
                    with_ci("accuracy"),
                    "; ".join(g.notes) or "",
                )
            )
        rep.table(
            [
                "group",
                "n",
                "real",
                "synthetic",
                "AUC [95% CI]",
                "AP",
                "EER",
                "FPR [CI]",
                "FNR [CI]",
                "accuracy [CI]",
                "notes",
            ],
            rows,
        )
        rep.table(
            ["gap metric", "value"],
            [(k, v) for k, v in gap.items() if k != "groups" and not isinstance(v, dict)],
        )
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        names = [g.name for g in groups]
        xs = np.arange(len(names))
        for off, k, color in ((-0.18, "fpr", "tab:red"), (0.18, "fnr", "tab:blue")):
            vals = np.array(
                [g.metrics.get(k) if g.metrics.get(k) is not None else np.nan for g in groups]
            )
            lo = np.array([(g.ci95.get(k) or (None, None))[0] for g in groups], dtype=float)
            hi = np.array([(g.ci95.get(k) or (None, None))[1] for g in groups], dtype=float)
            err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
            ax.bar(xs + off, vals, width=0.36, color=color, label=k.upper(), yerr=err, capsize=3)
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="rate", title=f"FPR / FNR by {key} (95% CI)", ylim=(0, 1))
        ax.legend(fontsize=8)
        rep.figure(fig, f"error rates by {key}")
        if data is not None:
            labels_of = np.array(
                ["|".join(str(a.get(k, "n/a")) for k in key.split(" × ")) for a in data.attributes]
            )
            curves, one_class = [], []
            for lab in sorted(set(labels_of)):
                sel = labels_of == lab
                y, s = data.labels[sel], data.scores[sel]
                (curves if 0 < y.sum() < y.size else one_class).append((lab, y, s))
            if one_class:
                # an empty or partial ROC would read as a result: say which groups lack one
                rep.paragraph(
                    f"No ROC for {', '.join(lab.replace('|', ', ') for lab, _, _ in one_class)}: "
                    "AUC is n/a where a group has only real or only synthetic items, and a ROC "
                    "curve needs both.",
                    cls="muted",
                )
            if curves:
                fig, ax = plt.subplots(figsize=(4.2, 4.2))
                for lab, y, s in curves:
                    fpr, tpr, _ = roc_curve(y, s)
                    ax.plot(fpr, tpr, label=lab.replace("|", ", "), lw=1.2)
                ax.plot([0, 1], [0, 1], "k:", lw=0.8)
                ax.set(xlabel="FPR", ylabel="TPR", title=f"ROC by {key}")
                ax.legend(fontsize=7)
                rep.figure(fig, f"ROC by {key}")
    if data is not None:
        rep.heading("Calibration and scores", "calibration")
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        bins = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(data.scores, bins) - 1, 0, 9)
        xs_, ys_ = [], []
        for b in range(10):
            m = idx == b
            if m.any():
                xs_.append(data.scores[m].mean())
                ys_.append(data.labels[m].mean())
        ax.plot(xs_, ys_, "o-", label="detector")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfectly calibrated")
        ax.set(xlabel="mean P(synthetic)", ylabel="fraction synthetic", title="calibration")
        ax.legend(fontsize=8)
        rep.figure(fig, "calibration curve")
        fig, ax = plt.subplots(figsize=(5.5, 3))
        ax.hist(data.scores[data.labels == 0], bins=30, range=(0, 1), alpha=0.6, label="real")
        ax.hist(data.scores[data.labels == 1], bins=30, range=(0, 1), alpha=0.6, label="synthetic")
        ax.axvline(report.threshold, color="k", ls="--", lw=1)
        ax.set(xlabel="P(synthetic)", ylabel="items", title="score distribution")
        ax.legend(fontsize=8)
        rep.figure(fig, "score histograms")
    rep.heading("Definitions", "definitions")
    rep.paragraph(
        "FPR: real items flagged synthetic. FNR: synthetic items missed. "
        "F_FPR = Σ_g |FPR_g − FPR|; "
        "F_EO = Σ_g (|FPR_g − FPR| + |TPR_g − TPR|); F_MEO = largest max−min gap of FPR or FNR; "
        "F_DP = max−min of the rate of items flagged; F_OAE = max−min accuracy (Lin et al., CVPR "
        "2024). n/a: a group with only one class cannot have that metric; its counts are shown."
    )
    return {"json": out / "fairness.json", "html": rep.write(out / "report.html")}

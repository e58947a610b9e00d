"""The policy search as text (a ranked table) and as a self-contained HTML report:
each candidate's estimates with intervals, its paired difference to the logged policy
with the corrected interval it is ranked by, and its cumulative value over the logs
(plots embedded as PNG)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from replay.optimize import OptimizeResult
from replay.report import _png


def _f(x: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _signed(x: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.{digits}f}"


def table(result: OptimizeResult, top: int | None = None) -> str:
    """The ranked table: the logged baseline first, then the candidates best first."""
    ests = list(result.baseline)
    rows = result.ranked[:top] if top else result.ranked
    width = max([len(r.name) for r in rows] + [len("logged (baseline)")])
    m = len(result.ranked)
    level = 100 * (1 - result.alpha / m)
    head = (f"{'#':>3}  {'spec':<{width}}  " + "  ".join(f"{e:>24}" for e in ests) +
            f"  {'vs logged (' + result.rank_by + ')':>33}")
    lines = [f"{result.n} rows ({result.skipped} skipped); {m} candidates; ranked by the "
             f"lower bound of the paired {result.rank_by} difference to the logged policy, "
             f"{level:.2f}% intervals (Bonferroni over {m})", "", head, "-" * len(head)]

    def cells(estimates: dict[str, Any]) -> str:
        return "  ".join(f"{_f(estimates[e].value):>7} [{_f(estimates[e].ci[0])}, "
                         f"{_f(estimates[e].ci[1])}]" for e in ests)

    lines.append(f"{'':>3}  {'logged (baseline)':<{width}}  {cells(result.baseline)}")
    for i, r in enumerate(rows, 1):
        p = r.paired[result.rank_by]
        mark = "*" if p.lower > 0 else " "
        lines.append(f"{i:>3}  {r.name:<{width}}  {cells(r.estimates)}  "
                     f"{_signed(p.difference):>8} [{_signed(p.ci_corrected[0])}, "
                     f"{_signed(p.ci_corrected[1])}]{mark}")
    if top and len(result.ranked) > top:
        lines.append(f"... and {len(result.ranked) - top} more (--json or --report for all)")
    lines.append("")
    winner = result.winner
    cur = result.current
    if winner is None:
        lines.append("no candidate beats the logged policy (* marks a lower bound above 0)")
    else:
        lines.append(f"winner: {winner.name} (* marks a lower bound above 0)")
    if cur is not None:
        rank = result.ranked.index(cur) + 1
        lines.append(f"current spec: {cur.name} (rank {rank})")
    return "\n".join(lines)


def _plots(result: OptimizeResult, top: int) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rows = result.ranked
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.32 * len(rows)))
    for y, r in enumerate(rows):
        p = r.paired[result.rank_by]
        color = "C2" if p.lower > 0 else ("C3" if p.ci_corrected[1] < 0 else "C0")
        ax.errorbar(p.difference, -y, xerr=[[p.difference - p.ci_corrected[0]],
                                            [p.ci_corrected[1] - p.difference]],
                    fmt="o", color=color, capsize=2)
    ax.axvline(0, color="k", lw=1, ls="--")
    ax.set_yticks([-y for y in range(len(rows))], [r.name for r in rows], fontsize=7)
    ax.set_xlabel(f"{result.rank_by} difference to the logged policy "
                  f"({100 * (1 - result.alpha / len(rows)):.2f}% interval)")
    ax.grid(axis="x", alpha=0.3)
    out.append(("Paired differences to the logged policy", _png(fig)))

    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(range(len(result.baseline_over_time)), result.baseline_over_time, "k--",
            label="logged")
    for r in rows[:top]:
        ax.plot(range(len(r.over_time)), r.over_time, label=r.name)
    ax.set_xlabel("log position (2% steps, time order)")
    ax.set_ylabel("cumulative IPS value")
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    out.append((f"Progressive value over the logs (top {min(top, len(rows))})", _png(fig)))
    return out


def write_report(result: OptimizeResult, path: str | Path, title: str = "bandit-replay "
                 "optimize", top: int = 5, applied: dict[str, Any] | None = None) -> None:
    ests = list(result.baseline)
    m = len(result.ranked)

    def cells(estimates: dict[str, Any]) -> str:
        return "".join(f"<td>{estimates[e].value:.5f}<br><small>[{estimates[e].ci[0]:.5f}, "
                       f"{estimates[e].ci[1]:.5f}]</small></td>" for e in ests)

    body = [f"<tr><td></td><td>logged (baseline)</td><td></td>{cells(result.baseline)}"
            "<td></td><td></td></tr>"]
    for i, r in enumerate(result.ranked, 1):
        p = r.paired[result.rank_by]
        style = " style='background:#e8f5e9'" if p.lower > 0 else ""
        body.append(f"<tr{style}><td>{i}</td><td>{html.escape(r.name)}</td>"
                    f"<td>{html.escape(r.candidate.origin)}</td>{cells(r.estimates)}"
                    f"<td>{p.difference:+.5f}<br><small>[{p.ci_corrected[0]:+.5f}, "
                    f"{p.ci_corrected[1]:+.5f}]</small></td><td>{r.seconds:.2f}</td></tr>")
    winner = result.winner
    verdict = (f"Winner: <b>{html.escape(winner.name)}</b>" if winner is not None else
               "No candidate beats the logged policy.")
    if applied is not None:
        verdict += f" Apply: {html.escape(str(applied.get('reason')))}."
    figs = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' "
                   f"src='data:image/png;base64,{b64}'>" for t, b64 in _plots(result, top))
    heads = "".join(f"<th>{e}</th>" for e in ests)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}td:nth-child(2),td:nth-child(3){{text-align:left}}img{{max-width:100%}}
</style></head><body><h1>{html.escape(title)}</h1>
<p>{result.n} rows, {result.skipped} skipped. {m} candidates, each learned over the logs
in time order (scored before learning each row). Ranked by the lower bound of the paired
{result.rank_by} difference to the logged policy on the same rows, at
{100 * (1 - result.alpha / m):.2f}% (Bonferroni over {m}: all hold together at
{100 * (1 - result.alpha):.0f}%). {verdict}</p>
<table><tr><th>#</th><th>spec</th><th>from</th>{heads}<th>vs logged</th><th>s</th></tr>
{''.join(body)}</table>{figs}</body></html>"""
    Path(path).write_text(page, encoding="utf-8")

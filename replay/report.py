"""A self-contained HTML report: estimates with intervals per policy, the IPS value
over time, and the reward model's reliability curve (plots embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(result: Any) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    names = list(result.policies)
    ests = list(next(iter(result.policies.values())).estimates) if names else []
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * len(names) * max(1, len(ests)) / 2))
    y = 0.0
    ticks, labels = [], []
    for name in names:
        for j, e in enumerate(ests):
            est = result.policies[name].estimates[e]
            ax.errorbar(est.value, y, xerr=[[est.value - est.ci[0]], [est.ci[1] - est.value]],
                        fmt="o", color=f"C{j}", label=e if name == names[0] else None)
            y += 1
        ticks.append(y - (len(ests) + 1) / 2)
        labels.append(name)
        y += 1
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("estimated value per row (95% interval)")
    ax.legend(loc="best")
    ax.grid(axis="x", alpha=0.3)
    out.append(("Estimated policy values", _png(fig)))

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name in names:
        pts = result.policies[name].over_time
        if pts:
            ax.plot(range(len(pts)), [v for _, v in pts], label=name)
    ax.set_xlabel("log position (2% steps, time order)")
    ax.set_ylabel("cumulative IPS value")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    out.append(("Reward over time", _png(fig)))

    rm = result.metrics.get("reward_model", {})
    if rm.get("curve"):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        pred = [c["predicted"] for c in rm["curve"]]
        obs = [c["observed"] for c in rm["curve"]]
        top = max(pred + obs + [1e-6]) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=1, label="perfect")
        ax.plot(pred, obs, "o-", label=f"reward model (ECE {rm['ece']:.4f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("observed")
        ax.legend(loc="best")
        out.append(("Calibration (reliability curve)", _png(fig)))
    return out


def write_report(result: Any, path: str | Path, title: str = "bandit-replay") -> None:
    rows = []
    for name, r in result.policies.items():
        for e, est in r.estimates.items():
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{e}</td><td>{r.n}</td>"
                        f"<td>{est.value:.6f}</td><td>[{est.ci[0]:.6f}, {est.ci[1]:.6f}]</td>"
                        f"<td>[{est.ci_normal[0]:.6f}, {est.ci_normal[1]:.6f}]</td></tr>")
    figs = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' "
                   f"src='data:image/png;base64,{b64}'>" for t, b64 in _plots(result))
    metrics = html.escape(str(result.metrics.get("rates", {})))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{result.n} rows, {result.skipped} skipped. Logged: {metrics}</p>
<table><tr><th>policy</th><th>estimator</th><th>n</th><th>value</th><th>interval</th>
<th>normal interval</th></tr>{''.join(rows)}</table>{figs}</body></html>"""
    Path(path).write_text(page, encoding="utf-8")


def write_uplift_report(result: dict[str, Any], path: str | Path,
                        title: str = "bandit-replay uplift") -> None:
    """Per-offer incremental effects (T-learner, DR with interval) and Qini curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{r['t_learner']:.5f}</td><td>{r['dr']:.5f}</td>"
        f"<td>[{r['ci'][0]:.5f}, {r['ci'][1]:.5f}]</td><td>{r['treated']}</td>"
        f"<td>{r['control']}</td></tr>"
        for name, r in sorted(result["offers"].items(), key=lambda kv: -kv[1]["dr"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, pts in sorted(result["qini"].items()):
        ax.plot([q for q, _ in pts], [g for _, g in pts], label=name)
    ax.plot([0, 1], [0, 0], "k--", lw=1)
    ax.set_xlabel("fraction of users targeted (by predicted uplift)")
    ax.set_ylabel("incremental outcomes (Qini)")
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    img = _png(fig)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}td,th{{border:1px solid #ccc;
padding:4px 8px}}table{{border-collapse:collapse}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{result['rows']} rows, {result['control_rows']} showed nothing.
Outcome: {html.escape(str(result['kind']))}.</p>
<table><tr><th>offer</th><th>T-learner</th><th>DR</th><th>95% interval</th><th>treated</th>
<th>control</th></tr>{rows}</table><h2>Qini curves</h2>
<img alt="Qini curves" src="data:image/png;base64,{img}"></body></html>"""
    Path(path).write_text(page, encoding="utf-8")

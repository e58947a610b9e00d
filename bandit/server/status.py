"""The live status page at ``/``: one server-rendered HTML page, inline SVG charts, no
scripts and no build step; it refreshes itself every 5 seconds.

It shows the host's view when its workers share ``BANDIT_SHARED_DIR`` (``bandit-serve``
with several workers makes one; see :mod:`bandit.server.shared_live`), else this
worker's: decisions/s, exploration rate, CTR and mean reward per policy or experiment
arm over the last ten minutes, the model being served (version, age, pinned or not,
events learned), the learner's lag at its last checkpoint and the local spool depth.
"""

from __future__ import annotations

import html
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bandit.server.livestats import BUCKET_SECONDS, Counts
from bandit.stores.checkpoint import Checkpoint

if TYPE_CHECKING:
    from bandit.server.service import Service

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _age(created_at: str | None) -> str:
    if not created_at:
        return "—"
    try:
        t = datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "—"
    s = max(0.0, time.time() - t)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else
                                         f"{s / 3600:.1f} h")


def chart(title: str, series: dict[str, list[tuple[float, float]]], unit: str,
          width: int = 560, height: int = 180) -> str:
    """An SVG line chart of ``{name: [(t, value)]}``."""
    pts = [p for s in series.values() for p in s]
    pad = 36
    if not pts:
        body = (f"<text x='{width / 2}' y='{height / 2}' text-anchor='middle' "
                "fill='#888'>no data yet</text>")
    else:
        t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
        top = max(p[1] for p in pts) or 1.0
        span = (t1 - t0) or 1.0

        def xy(t: float, v: float) -> str:
            x = pad + (t - t0) / span * (width - 2 * pad)
            y = height - pad - v / top * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        lines = []
        for k, (name, s) in enumerate(sorted(series.items())):
            color = COLORS[k % len(COLORS)]
            path = " ".join(xy(t, v) for t, v in s)
            lines.append(f"<polyline class='series' data-series='{html.escape(name)}' "
                         f"fill='none' stroke='{color}' stroke-width='2' points='{path}'/>")
            for t, v in s:  # a marker per bucket, so a single bucket still shows
                cx, cy = xy(t, v).split(",")
                lines.append(f"<circle cx='{cx}' cy='{cy}' r='4' fill='{color}'/>")
            lines.append(f"<text x='{width - pad + 4}' y='{pad + 14 * k}' font-size='11' "
                         f"fill='{color}'>{html.escape(name)}</text>")
        body = (f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
                "stroke='#999'/>"
                f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' stroke='#999'/>"
                f"<text x='4' y='{pad}' font-size='10'>{top:.3g}</text>"
                f"<text x='4' y='{height - pad}' font-size='10'>0</text>" + "".join(lines))
    return (f"<figure><figcaption>{html.escape(title)} ({html.escape(unit)})</figcaption>"
            f"<svg class='chart' role='img' aria-label='{html.escape(title)}' "
            f"width='{width + 90}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            f"{body}</svg></figure>")


def tiles(svc: Service, recent: dict[str, Counts]) -> list[tuple[str, Any]]:
    """The headline figures: rates, the model, the learner's lag, the spool, and the
    apprentice's agreement."""
    info = svc.model_info()
    sink = svc.sink.health()
    m = svc.manifest
    lag = Checkpoint.of(m).lag if m is not None else None
    decisions = sum(c.decisions for c in recent.values())
    explored = sum(c.explored for c in recent.values())
    rate = sum(c.decisions for c in svc.counts.window(60).values()) / 60.0
    out: list[tuple[str, Any]] = [
        ("decisions/s (last minute)", f"{rate:.1f}"),
        ("exploration rate (5 min)", f"{explored / decisions:.3f}" if decisions else "—"),
        ("model version", info["version"] + (" (pinned)" if info.get("pinned") else "")),
        ("model age", _age(info.get("created_at"))),
        ("events learned", info["events_learned"]),
        ("policy", info["policy"] + ("" if info.get("mode") == "online" else
                                     f" · {info.get('mode')}")),
        ("learner lag (messages)", "—" if lag is None else lag),
        ("spool depth", sink.get("spool_depth", "—")),
    ]
    app = info.get("apprentice")
    if isinstance(app, dict):  # how often the learned policy agrees with the baseline
        def share(a: Any, n: Any) -> str:
            return "—" if a is None else f"{a:.3f} of {n}"

        out.append(("apprentice agreement", share(app.get("agreement"),
                                                  app.get("decisions"))))
        out += [(f"agreement · slot {x['slot']}", share(x["agreement"], x["decisions"]))
                for x in app.get("slots", [])]
    return out


def value_section(svc: Service) -> str:
    """Value-aware ranking: the objective, each head, and each constraint's state: the
    daily budgets' spend is the host's (every worker's, from the ledger in the model
    dir); the other counts are this worker's (the impressions it showed)."""
    if svc.value_aware.ranking is None:
        return ""
    st = svc.value_aware.ranking.state()
    heads = "".join(f"<tr><td>{html.escape(k)}</td><td>{h['learned']}</td>"
                    f"<td>{'yes' if h['calibrated'] else 'no'}</td></tr>"
                    for k, h in st["heads"].items())
    cons = st["constraints"]
    rows = "".join(f"<tr data-constraint='{html.escape(k)}'><td>{html.escape(k)}</td>"
                   f"<td><code>{html.escape(str(v))}</code></td></tr>"
                   for k, v in cons.items())
    return (f"<h2>Value-aware ranking</h2><p id='objective'>objective: "
            f"<code>{html.escape(st['objective'])}</code></p>"
            "<table id='heads'><tr><th>head</th><th>events learned</th><th>calibrated</th>"
            f"</tr>{heads}</table>"
            + (f"<table id='constraints'><tr><th>constraint</th><th>state</th></tr>{rows}"
               "</table>" if cons else "<p>no constraints at inference</p>"))


def render(svc: Service) -> str:
    recent = svc.counts.window(300)
    rows = []
    for name, c in sorted(recent.items()):
        ctr = c.rewards / c.decisions if c.decisions else None
        mean = c.reward_sum / c.decisions if c.decisions else None
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{c.decisions}</td>"
                    f"<td>{'—' if ctr is None else f'{ctr:.4f}'}</td>"
                    f"<td>{'—' if mean is None else f'{mean:.4f}'}</td></tr>")
    per_s: dict[str, list[tuple[float, float]]] = {}
    ctr_series: dict[str, list[tuple[float, float]]] = {}
    for t, buckets in svc.counts.timeline():
        for name, c in buckets.items():
            per_s.setdefault(name, []).append((t, c.decisions / BUCKET_SECONDS))
            if c.decisions:
                ctr_series.setdefault(name, []).append((t, c.rewards / c.decisions))
    tile_html = "".join(f"<div class='tile' data-tile='{html.escape(k)}'><div class='k'>"
                        f"{html.escape(k)}</div><div class='v'>{html.escape(str(v))}</div>"
                        "</div>" for k, v in tiles(svc, recent))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>offer-bandit status</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}
.tiles{{display:flex;flex-wrap:wrap;gap:.6em}}.tile{{border:1px solid #ddd;border-radius:6px;
padding:.5em .8em;min-width:10em}}.k{{font-size:.75em;color:#666}}.v{{font-size:1.3em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ddd;padding:3px 8px}}
figure{{margin:1em 0}}figcaption{{font-size:.9em;color:#444}}</style></head><body>
<h1>offer-bandit</h1><div class="tiles">{tile_html}</div>
<h2>Last 5 minutes by {'arm' if svc.experiment else 'policy'}</h2>
<table id="by-series"><tr><th>{'arm' if svc.experiment else 'policy'}</th><th>decisions</th>
<th>CTR</th><th>mean reward</th></tr>{''.join(rows)}</table>
{chart("Decisions per second", per_s, "per 10 s bucket")}
{chart("CTR over time", ctr_series, "rewarded decisions / decisions")}
{value_section(svc)}
<p style="font-size:.8em;color:#888">{"All workers' view" if svc.shared else
                                        "This worker's view"}; refreshes every 5 s.</p>
</body></html>"""


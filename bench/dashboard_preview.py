"""A picture of the Grafana dashboard (docker/grafana/dashboards/smsgw.json) without Grafana: no Docker
engine runs here, so this draws the dashboard's panels, in its layout, from real data. It starts
`smsgw dev` on free ports, sends messages for a while, scrapes /metrics every second, evaluates each
panel's PromQL (the few forms the dashboard uses) over those scrapes, and writes a PNG.

    python -m bench.dashboard_preview [--seconds 60] [--out docker/grafana/dashboard-preview.png]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ROOT, free_port

Sample = tuple[str, tuple[tuple[str, str], ...], float]  # series name, labels, value
Scrape = tuple[float, list[Sample]]

_RATE = re.compile(r"^sum(?: by \(([\w, ]+)\))? ?\((rate|increase)\((\w+)\[(\d+)m\]\)\)$")
_GAUGE = re.compile(r"^(sum|max)(?: by \(([\w, ]+)\))? ?\((\w+)\)$")
_QUANTILE = re.compile(r"^histogram_quantile\(([\d.]+), sum by \(le, (\w+)\) \(rate\((\w+)\[(\d+)m\]\)\)\)$")


def scrape(base: str) -> list[Sample]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return [(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def _group(samples: list[Sample], name: str, by: list[str]) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for n, labels, value in samples:
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in by)] += value
    return out


def _at(scrapes: list[Scrape], i: int, seconds: float) -> int:
    """Index of the scrape `seconds` before scrape i (or the first)."""
    j = i
    while j > 0 and scrapes[i][0] - scrapes[j - 1][0] <= seconds:
        j -= 1
    return j


def evaluate(expr: str, scrapes: list[Scrape]) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """{label values: [(t, value)]} for the PromQL forms the dashboard uses."""
    series: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    t0 = scrapes[0][0]
    if m := _RATE.match(expr):
        by = [b.strip() for b in (m[1] or "").split(",") if b.strip()]
        for i in range(1, len(scrapes)):
            j = _at(scrapes, i, int(m[4]) * 60)
            now, then = _group(scrapes[i][1], m[3], by), _group(scrapes[j][1], m[3], by)
            dt = scrapes[i][0] - scrapes[j][0]
            for key, value in now.items():
                delta = value - then.get(key, 0.0)
                series[key].append((scrapes[i][0] - t0, delta / dt if m[2] == "rate" and dt else delta))
    elif m := _GAUGE.match(expr):
        by = [b.strip() for b in (m[2] or "").split(",") if b.strip()]
        for t, samples in scrapes:
            grouped = _group(samples, m[3], by)
            if m[1] == "max" and grouped:
                grouped = {(): max(grouped.values())}
            for key, value in grouped.items():
                series[key].append((t - t0, value))
    elif m := _QUANTILE.match(expr):
        q, label, name = float(m[1]), m[2], m[3]
        for i in range(1, len(scrapes)):
            j = _at(scrapes, i, int(m[4]) * 60)
            now, then = _group(scrapes[i][1], name, [label, "le"]), _group(scrapes[j][1], name, [label, "le"])
            buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for (group, le), value in now.items():
                buckets[group].append((float(le), value - then.get((group, le), 0.0)))
            for group, bs in buckets.items():
                bs.sort()
                total = bs[-1][1]
                if total <= 0:
                    continue
                lower, below = 0.0, 0.0
                for upper, count in bs:
                    if count >= q * total:
                        inside = count - below
                        value = lower + (upper - lower) * ((q * total - below) / inside if inside else 0)
                        series[(group,)].append((scrapes[i][0] - t0, value if upper != float("inf") else lower))
                        break
                    lower, below = upper, count
    else:
        raise ValueError(f"the preview cannot evaluate {expr!r}")
    return series


def legend(fmt: str, expr: str, key: tuple[str, ...]) -> str:
    names = re.findall(r"\{\{(\w+)\}\}", fmt)
    by = re.search(r"by \(([\w, ]+)\)", expr)
    labels = [b.strip() for b in by[1].split(",") if b.strip() != "le"] if by else []
    values = dict(zip(labels, key, strict=False))
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m[1], ""), fmt) if names else fmt


def draw(dashboard: dict[str, Any], scrapes: list[Scrape], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    fig = plt.figure(figsize=(16, rows * 0.42), facecolor="#111217")
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        ax = fig.add_axes((g["x"] / 24 + 0.03, 1 - (g["y"] + g["h"]) / rows + 0.018, g["w"] / 24 - 0.036,
                           g["h"] / rows - 0.03), facecolor="#181b1f")
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        lines = [(legend(t["legendFormat"], t["expr"], key), points)
                 for t in panel["targets"] for key, points in sorted(evaluate(t["expr"], scrapes).items())]
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        if panel["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            text = "   ".join(f"{name}: {points[-1][1]:g}{' s' if unit == 's' else ''}" for name, points in lines
                               if points) or "no data"
            ax.text(0.5, 0.45, text, color="#73bf69", fontsize=13, ha="center", va="center", transform=ax.transAxes)
            continue
        for name, points in lines:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.4)
        ax.set_ylabel(unit, color="#8e8e8e", fontsize=8)
        ax.grid(color="#2c3235", linewidth=0.5)
        if lines:
            ax.legend(fontsize=7, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#d8d9da", loc="upper left")
    fig.text(0.995, 0.002, "preview: the dashboard's queries over /metrics of smsgw dev "
             "(python -m bench.dashboard_preview)", color="#8e8e8e", fontsize=7, ha="right", va="bottom")
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def load(base: str, stop: threading.Event) -> None:
    """Messages to the simulator's numbers: mostly delivered, some undelivered and rejected."""
    with httpx.Client(base_url=base, headers={"X-API-Key": "dev-key"}, timeout=10) as client:
        n = 0
        while not stop.is_set():
            to = ["+96170123456"] * 8 + ["+14155550001", "+14155550003"]
            client.post("/msg-client/send", json={"To": [f"{t[:-3]}{(n + i) % 997:03d}" if i < 8 else t
                                                         for i, t in enumerate(to)], "Body": f"preview {n}"})
            n += 1
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send and scrape (default 60)")
    parser.add_argument("--out", type=Path, default=ROOT / "docker/grafana/dashboard-preview.png")
    args = parser.parse_args(argv)
    dashboard = orjson.loads((ROOT / "docker/grafana/dashboards/smsgw.json").read_bytes())
    http, broker, smsc = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SMSGW_PORT": str(http), "SMSGW_BROKER_URL": f"embedded://127.0.0.1:{broker}",
               "SMSGW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/preview.db", "SMSGW_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "dev", "--smsc-port", str(smsc)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{http}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            stop = threading.Event()
            sender = threading.Thread(target=load, args=(base, stop), daemon=True)
            sender.start()
            scrapes: list[Scrape] = []
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                scrapes.append((time.monotonic(), scrape(base)))
                time.sleep(1.0)
            stop.set()
            sender.join(10)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    draw(dashboard, scrapes, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

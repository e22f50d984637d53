"""Rewrite the results table in bench/README.md from bench/results/*.json (the last full run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = ROOT / "bench" / "results" / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def table() -> str:
    rows: list[tuple[str, str, str, str]] = []
    machine: dict[str, Any] = {}
    for accept in (_load("accept"), _load("accept-api-only")):
        if not accept:
            continue
        machine = accept["machine"]
        m, o = accept["max"], accept["at_offered_rate"]
        mode = "API only" if accept.get("api_only") else "full gateway"
        rows.append((f"accept ({mode}): single-recipient req/s", f"{m['req_per_s']:,.0f}", "≥ 4,000",
                     f"{accept['workers']} worker process(es); p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms at "
                     f"c={accept['concurrency']}; errors {m['errors']}"))
        rows.append((f"accept ({mode}): p99 at {accept['offered_rate']:.0f} req/s offered", f"{o['p99_ms']} ms",
                     "< 50 ms", f"p50 {o['p50_ms']} ms, p95 {o['p95_ms']} ms; errors {o['errors']}"))
    bulk = _load("bulk")
    if bulk:
        machine = machine or bulk["machine"]
        rows.append(("bulk: 10,000 recipients, time to 200", f"{bulk['median_s']} s (median)", "< 1 s",
                     "runs: " + ", ".join(f"{t} s" for t in bulk["runs_s"])))
    for name in ("e2e-smpp", "e2e-http"):
        e = _load(name)
        if not e:
            continue
        machine = machine or e["machine"]
        rows.append((f"{name}: {e['messages']:,} messages, msg/s", f"{e['msg_per_s']:,.0f}",
                     "≥ 3,000" if name == "e2e-smpp" else "-",
                     f"first accept → last report {e['first_accept_to_last_report_s']} s; lost {e['lost']}; "
                     f"duplicate reports {e['duplicate_reports']}; latency p50 {e['latency_s']['p50']} s, "
                     f"p99 {e['latency_s']['p99']} s"))
        rows.append((f"{name}: gateway peak RSS", f"{e['peak_rss_mb']} MB", "< 300 MB" if name == "e2e-smpp" else "-",
                     f"{e['workers']} worker process(es)" + (f"; resubmits {e['resubmits']}" if e.get("resubmits")
                                                              is not None else "")))
    lines = ["| figure | measured | target | detail |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if machine:
        lines.append("")
        lines.append(f"Machine: {machine['cpus']} CPUs ({machine['cpu_model'] or 'unknown model'}), "
                     f"{machine['memory_gb']} GB RAM, Python {machine['python']}, Linux {machine['kernel']}. "
                     "PostgreSQL, ActiveMQ, the simulator, the load generator and the consumer share those CPUs.")
    return "\n".join(lines)


def faults_table() -> str:
    lines = ["| fault | accepted (200) | final | delivered / undelivered | reports lost | duplicate reports | "
             "resubmits | refused while down | what happened |", "|---|---|---|---|---|---|---|---|---|"]
    found = False
    for name in ("smsc", "broker", "database", "gateway", "replicas"):
        r = _load(f"faults-{name}")
        if not r:
            continue
        found = True
        st = r["statuses"]
        refused = ", ".join(f"{n}× {code}" for code, n in r["refused"].items()) or "none"
        lines.append(f"| {name} | {r['accepted']:,} | {r['final']:,} | {st.get('delivered', 0):,} / "
                     f"{st.get('undelivered', 0):,} | {r['lost_reports']} | {r['duplicate_reports']} | "
                     f"{r['resubmits']} ({r['resubmit_pct']} %) | {refused} | {'; '.join(r['events'])} |")
    return "\n".join(lines) if found else "(run `make faults`)"


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    for marker in (START, END, "<!-- faults:start -->", "<!-- faults:end -->"):
        if marker not in text:
            print(f"{README}: marker {marker} missing", file=sys.stderr)
            return 1
    text = _replace(text, START, END, table())
    text = _replace(text, "<!-- faults:start -->", "<!-- faults:end -->", faults_table())
    README.write_text(text, encoding="utf-8")
    top = ROOT / "README.md"
    top.write_text(_replace(top.read_text(encoding="utf-8"), START, END, table()), encoding="utf-8")
    print(f"updated {README.relative_to(ROOT)} and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

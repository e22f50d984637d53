"""Rewrite the results tables in bench/README.md (and the short one in README.md) from bench/results/*.json.

bench/README.md gets a "before" column beside the latest figures: the run kept in bench/results/baseline/
(the last full `make bench` before issue 15), and for the figures that run could not measure (CPU per
process, row versions, statements) the instrumented run in bench/results/baseline/instrumented/, whose
size is shown with each figure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
RESULTS = ROOT / "bench" / "results"
BASELINE = RESULTS / "baseline"
START, END = "<!-- results:start -->", "<!-- results:end -->"
CPU_ORDER = ("gateway", "postgres", "activemq", "simulator", "loadgen")

Row = tuple[str, str, str, str, str]  # figure, measured, before, target, detail
Getter = Callable[[dict[str, Any]], str | None]


def _load(name: str, where: Path = RESULTS) -> dict[str, Any] | None:
    path = where / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def _before(name: str, get: Getter) -> str:
    """The figure from the baseline run, else from the instrumented baseline (with its size), else '-'."""
    for where, label in ((BASELINE, ""), (BASELINE / "instrumented", "instrumented")):
        data = _load(name, where)
        value = get(data) if data else None
        if value is not None:
            if label and data:
                size = data.get("messages") or data.get("cpu_messages")
                return f"{value} ({size:,} msgs)" if size else value
            return value
    return "-"


def _cpu(data: dict[str, Any]) -> str | None:
    cpu = data.get("cpu_ms_per_1k")
    if not cpu:
        return None
    return " / ".join("-" if cpu.get(k) is None else f"{cpu[k]:,.0f}" for k in CPU_ORDER)


def _rows(data: dict[str, Any]) -> str | None:
    rows = data.get("row_versions_per_message")
    return None if not rows else f"{rows['total']}"


def _statements(data: dict[str, Any]) -> str | None:
    if "statements_per_message" not in data:
        return None
    return f"{data['statements_per_message']} + {data['transaction_statements_per_message']}"


def _top(data: dict[str, Any], n: int = 3) -> str:
    tops = data.get("top_statements") or []
    # The start of each query, enough to tell them apart; a `|` would end the table cell.
    texts = [" ".join(s["query"].split())[:60].replace("|", "\\|") for s in tops[:n]]
    return "; ".join(f"`{t}…` {s['us_per_message']} µs" for t, s in zip(texts, tops, strict=False))


def _row(name: str, label: str, latest: dict[str, Any] | None, get: Getter, target: str, detail: str,
         with_before: bool) -> Row | None:
    measured = get(latest) if latest else None
    before = _before(name, get) if with_before else ""
    if measured is None and before in ("", "-"):
        return None
    return (label, measured or "-", before, target, detail)


def _instrument_rows(name: str, e: dict[str, Any] | None, with_before: bool, targets: tuple[str, str]) -> list[Row]:
    """CPU per process, row versions and statements of one scenario (where measured, now or before); the
    detail is the latest run's, or the instrumented baseline's (marked so) until a run has measured them."""
    d, mark = e, ""
    if not (e and e.get("cpu_ms_per_1k")) and with_before:
        d, mark = _load(name, BASELINE / "instrumented"), "before: "
    cpu_detail = rows_detail = top_detail = ""
    if d and d.get("cpu_ms_per_1k"):
        cpu_detail = (f"{mark}over {d.get('cpu_window_s')} s; other work on the machine meanwhile "
                      f"{d.get('cpu_other_percent_of_core')} % of a core")
        by_table = d["row_versions_per_message"]["by_table"]
        rows_detail = mark + ", ".join(f"{t} {v}" for t, v in by_table.items() if v >= 0.01)
        top_detail = f"{mark}top: {_top(d)}" if d.get("top_statements") else ""
    out = [
        _row(name, f"{name}: CPU µs per message — gateway / PostgreSQL / ActiveMQ / simulator / load generator",
             e, _cpu, targets[0], cpu_detail, with_before),
        _row(name, f"{name}: row versions written per message", e, _rows, targets[1], rows_detail, with_before),
        _row(name, f"{name}: statements per message (+ BEGIN/COMMIT)", e, _statements, "-", top_detail,
             with_before),
    ]
    return [r for r in out if r is not None]


def _e2e_rows(name: str, e: dict[str, Any] | None, with_before: bool) -> list[Row]:
    rate_target = {"e2e-smpp": "≥ 3,000", "e2e-smpp-single": "≥ 2,500"}.get(name, "-")
    cpu_target = {"e2e-smpp": "≤ 250 / ≤ 150 / - / - / -", "e2e-smpp-single": "≤ 400 / - / - / - / -"}.get(name, "-")
    per_request = (e or {}).get("per_request", 1000 if name != "e2e-smpp-single" else 1)
    rows: list[Row | None] = [
        _row(name, f"{name}: msg/s, {per_request:,} recipient(s) per request", e,
             lambda d: f"{d['msg_per_s']:,.0f}", rate_target,
             (f"{e['messages']:,} messages; first accept → last report {e['first_accept_to_last_report_s']} s; "
              f"lost {e['lost']}; duplicate reports {e['duplicate_reports']}; latency p50 {e['latency_s']['p50']} s, "
              f"p99 {e['latency_s']['p99']} s") if e else "", with_before),
        _row(name, f"{name}: gateway peak RSS", e, lambda d: f"{d['peak_rss_mb']} MB",
             "< 300 MB" if name.startswith("e2e-smpp") else "-",
             (f"{e['workers']} worker process(es)" + (f"; resubmits {e['resubmits']}" if e.get("resubmits")
                                                      is not None else "")) if e else "", with_before),
    ]
    out = [r for r in rows if r is not None]
    return out + _instrument_rows(name, e, with_before,
                                  (cpu_target, "≤ 5" if name.startswith("e2e-smpp") else "-"))


def table(with_before: bool = True) -> str:
    rows: list[Row] = []
    machine: dict[str, Any] = {}
    settings: dict[str, str] = {}
    for name in ("accept", "accept-api-only"):
        accept = _load(name)
        if not accept:
            continue
        machine = accept["machine"]
        settings = settings or accept.get("postgres_settings", {})
        m, o = accept["max"], accept["at_offered_rate"]
        mode = "API only" if accept.get("api_only") else "full gateway"
        for r in (
            _row(name, f"accept ({mode}): single-recipient req/s", accept, lambda d: f"{d['max']['req_per_s']:,.0f}",
                 "≥ 4,000", f"{accept['workers']} worker process(es); p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms at "
                 f"c={accept['concurrency']}; errors {m['errors']}", with_before),
            _row(name, f"accept ({mode}): p99 at {accept['offered_rate']:.0f} req/s offered", accept,
                 lambda d: f"{d['at_offered_rate']['p99_ms']} ms", "< 50 ms",
                 f"p50 {o['p50_ms']} ms, p95 {o['p95_ms']} ms; errors {o['errors']}", with_before),
        ):
            if r:
                rows.append(r)
        rows += _instrument_rows(name, accept, with_before, ("-", "-"))
    bulk = _load("bulk")
    if bulk:
        machine = machine or bulk["machine"]
        r = _row("bulk", "bulk: 10,000 recipients, time to 200", bulk, lambda d: f"{d['median_s']} s (median)",
                 "< 1 s", "runs: " + ", ".join(f"{t} s" for t in bulk["runs_s"]), with_before)
        if r:
            rows.append(r)
    for name in ("e2e-smpp", "e2e-smpp-single", "e2e-http"):
        e = _load(name)
        if e:
            machine = machine or e["machine"]
            settings = settings or e.get("postgres_settings", {})
        if e or with_before:
            rows += _e2e_rows(name, e, with_before)
    if with_before:
        lines = ["| figure | measured | before (#15) | target | detail |", "|---|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    else:
        lines = ["| figure | measured | target | detail |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {d} | {e} |" for a, b, _, d, e in rows if b != "-"]
    if machine:
        lines.append("")
        lines.append(f"Machine: {machine['cpus']} CPUs ({machine['cpu_model'] or 'unknown model'}), "
                     f"{machine['memory_gb']} GB RAM, Python {machine['python']}{_interpreter(machine)}, "
                     f"Linux {machine['kernel']}. "
                     "PostgreSQL, ActiveMQ, the simulator, the load generator and the consumer share those CPUs.")
    lines.append("")
    if settings:
        lines.append(f"PostgreSQL {settings.get('server_version', '')}, a private cluster: "
                     f"synchronous_commit={settings.get('synchronous_commit')}, fsync={settings.get('fsync')}, "
                     f"full_page_writes={settings.get('full_page_writes')}.")
    else:
        lines.append("PostgreSQL: the shared test server (synchronous_commit=off, fsync=off, full_page_writes=off).")
    return "\n".join(lines)


def _interpreter(machine: dict[str, Any]) -> str:
    path = machine.get("python_executable")
    return f" ({path})" if path else ""


def _conflicts(r: dict[str, Any]) -> str:
    n = r.get("conflicting_reports")
    return f" ({n} with two statuses)" if n else ""


def faults_table() -> str:
    lines = ["| fault | accepted (200) | 200 not stored | final | delivered / undelivered | reports lost | "
             "duplicate reports | resubmits | refused while down | PostgreSQL | what happened |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    found = False
    for name in ("smsc", "broker", "database", "postgres-kill", "gateway", "replicas"):
        r = _load(f"faults-{name}")
        if not r:
            continue
        found = True
        st = r["statuses"]
        refused = ", ".join(f"{n}× {code}" for code, n in r["refused"].items()) or "none"
        pg = r.get("postgres_settings")
        pg_text = f"synchronous_commit={pg.get('synchronous_commit')}" if pg else "shared test server"
        lines.append(f"| {name} | {r['accepted']:,} | {r['accepted_but_not_stored']} | {r['final']:,} | "
                     f"{st.get('delivered', 0):,} / {st.get('undelivered', 0):,} | {r['lost_reports']} | "
                     f"{r['duplicate_reports']}{_conflicts(r)} | {r['resubmits']} ({r['resubmit_pct']} %) | "
                     f"{refused} | {pg_text} | "
                     f"{'; '.join(r['events'])} |")
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
    top.write_text(_replace(top.read_text(encoding="utf-8"), START, END, table(with_before=False)), encoding="utf-8")
    print(f"updated {README.relative_to(ROOT)} and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

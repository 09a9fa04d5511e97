"""What a `bench/compare.py` run leaves behind: targets checked, JSON, Markdown and a PNG chart.

`TARGETS` are the speed goals (issue "Speed: win clearly"), each tied to one result row by its
`id`: a ratio to the reference server measured in the same run, or an absolute bound on a
Genesis-Flow number. `evaluate` says, per target, the measured value and whether it was met (or
that the run did not measure it). `write_results` writes `<stem>.json`, `<stem>.md` and
`<stem>.png` under the results directory; the Markdown is what the README quotes.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    row: str              # the result row's id
    text: str             # what the goal says, for people
    min_ratio: float | None = None   # ratio (>1 = Genesis-Flow better) at least this
    max_value: float | None = None   # or: Genesis-Flow's value below this (row unit)
    below_row: str | None = None     # or: Genesis-Flow's value below the *reference's* value of that row


TARGETS: tuple[Target, ...] = (
    Target("log-batch/throughput", "log-batch (committed acks) >= 10x", min_ratio=10),
    Target("log-batch-enqueued/throughput", "log-batch (enqueued acks) >= 20x the reference", min_ratio=20),
    Target("log-metric/throughput", "log-metric, 8 clients >= 5x", min_ratio=5),
    Target("log-metric-50/throughput", "log-metric, 50 clients >= 5x", min_ratio=5),
    Target("log-metric-50/p99", "log-metric, 50 clients: p99 below the reference's p50",
           below_row="log-metric-50/p50"),
    Target("create/throughput", "runs/create >= 5x", min_ratio=5),
    Target("search@5000/p50", "runs/search p50 at 5,000 runs >= 5x faster", min_ratio=5),
    Target("search@50000/p50", "runs/search p50 at 50,000 runs in one experiment < 100 ms", max_value=100),
    Target("history/median", "get-history, 100,000 points >= 20x", min_ratio=20),
    Target("history-1m/median", "get-history, 1,000,000 points < 2 s", max_value=2.0),
)


def evaluate(rows: list[dict[str, Any]], targets: tuple[Target, ...] = TARGETS) -> list[dict[str, Any]]:
    by_id = {r["id"]: r for r in rows if r.get("id")}
    out = []
    for t in targets:
        row = by_id.get(t.row)
        result: dict[str, Any] = {"target": t.text, "row": t.row, "measured": None, "met": None}
        if row is not None:
            if t.min_ratio is not None:
                result["measured"] = row.get("ratio")
                result["unit"] = "x"
                if row.get("ratio") is not None:
                    result["met"] = row["ratio"] >= t.min_ratio
            elif t.max_value is not None:
                result["measured"] = row.get("genesis")
                result["unit"] = row.get("unit")
                if row.get("genesis") is not None:
                    result["met"] = row["genesis"] < t.max_value
            elif t.below_row is not None:
                ref = by_id.get(t.below_row, {}).get("reference")
                result["measured"] = row.get("genesis")
                result["bound"] = ref
                result["unit"] = row.get("unit")
                if row.get("genesis") is not None and ref is not None:
                    result["met"] = row["genesis"] < ref
        out.append(result)
    return out


def describe_machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "memory_gib": mem_gib, "kernel": platform.release(),
            "python": platform.python_version(), "host": platform.node()}


def _fmt(v: Any, unit: str | None) -> str:
    if v is None:
        return "–"
    if unit == "x":
        return f"{v:.2f}×"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v:,.1f} ms"
    return f"{v:,.0f} {unit}" if isinstance(v, (int, float)) and v >= 100 else f"{v:,.1f} {unit}"


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], targets: list[dict[str, Any]],
             resources: list[dict[str, Any]]) -> str:
    m = meta.get("machine", {})
    lines = [f"# Genesis-Flow vs `mlflow server` — {meta.get('started')}", "",
             f"Machine: {m.get('cpu_model')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, "
             f"kernel {m.get('kernel')}, Python {m.get('python')}. "
             f"Genesis-Flow git {meta.get('git')}, {meta.get('target')}; MongoDB wire server: "
             f"{meta.get('mongodb_server', '?')}; reference: mlflow {meta.get('mlflow_version', '?')} "
             f"(SQLite, {meta.get('reference_workers', '?')} workers). Both servers ran in this one run on this "
             "machine with identical request streams; ratio = how many times better Genesis-Flow is.", "",
             "| scenario | metric | reference | Genesis-Flow | ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['metric']} | {_fmt(r['reference'], r['unit'])} | "
                     f"{_fmt(r['genesis'], r['unit'])} | {_fmt(r['ratio'], 'x')} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for t in targets:
        mark = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        bound = f" (reference p50 {_fmt(t['bound'], t.get('unit'))})" if t.get("bound") is not None else ""
        lines.append(f"| {t['target']} | {_fmt(t['measured'], t.get('unit'))}{bound} | {mark} |")
    if resources:
        lines += ["", "## Resources (Genesis-Flow, per phase)", "",
                  "| phase | process | CPU-seconds | CPU-s per 1M metrics | peak RSS |", "|---|---|---:|---:|---:|"]
        for r in resources:
            per_m = f"{r['cpu_s_per_million']:,.1f}" if r.get("cpu_s_per_million") is not None else "–"
            lines.append(f"| {r['phase']} | {r['process']} | {r['cpu_s']:.1f} | {per_m} | {r['peak_rss_mib']:,.0f} MiB |")
    return "\n".join(lines) + "\n"


def resources(details: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per Genesis-Flow phase and process group: CPU-seconds, per million metrics, peak RSS."""
    out = []
    for phase, per in details.items():
        r = per.get("genesis")
        if not isinstance(r, dict) or "cpu_s" not in r:
            continue
        metrics = (r.get("metrics_per_s") or 0) * (r.get("wall_s") or 0)
        for group, secs in r["cpu_s"].items():
            if group == "bench client":
                continue
            out.append({"phase": phase, "process": group, "cpu_s": secs,
                        "cpu_s_per_million": round(secs / metrics * 1e6, 2) if metrics >= 1000 else None,
                        "peak_rss_mib": r.get("peak_rss_mib", {}).get(group, 0.0)})
    return out


def chart(rows: list[dict[str, Any]], path: Path) -> bool:
    """A horizontal bar chart of the ratios (log scale), one bar per row that has one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    data = [(f"{r['scenario'].strip()} — {r['metric']}", r["ratio"]) for r in rows if r.get("ratio")]
    if not data:
        return False
    labels, ratios = zip(*reversed(data))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(data) + 1.4))
    colors = ["#2e7d32" if x >= 1 else "#c62828" for x in ratios]
    ax.barh(range(len(data)), ratios, color=colors)
    ax.set_yticks(range(len(data)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, x in enumerate(ratios):
        ax.text(x, i, f" {x:.1f}×", va="center", fontsize=8)
    ax.set_xlabel("times better than mlflow server (same run; log scale)")
    ax.set_title("Genesis-Flow vs mlflow server")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_results(results_dir: Path, stem: str, meta: dict[str, Any], rows: list[dict[str, Any]],
                  details: dict[str, dict[str, Any]]) -> dict[str, str]:
    results_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "machine": describe_machine()}
    targets = evaluate(rows)
    res = resources(details)
    paths = {"json": results_dir / f"{stem}.json", "md": results_dir / f"{stem}.md", "png": results_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps({"meta": meta, "rows": rows, "targets": targets, "resources": res,
                                         "details": details}, indent=2, default=str))
    paths["md"].write_text(markdown(meta, rows, targets, res))
    if not chart(rows, paths["png"]):
        del paths["png"]
    return {k: str(v) for k, v in paths.items()}

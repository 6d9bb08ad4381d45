"""Machine description and table rendering (plain text and Markdown) for bench_local.py."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Sequence

__all__ = ["fmt_ns", "fmt_ratio", "machine_info", "markdown_table", "text_table"]


def machine_info() -> dict[str, Any]:
    cpu = None
    mhz = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and cpu is None:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("cpu MHz") and mhz is None:
                    mhz = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_mhz": mhz,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "python_build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
    }


def fmt_ns(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}x" if v >= 0.1 else f"{v:.3f}x" if v >= 0.001 else f"{v:.1e}x"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    out = []
    for j, r in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        out.append("  ".join(parts).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where /proc/loadavg is missing)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return [float(x) for x in fh.read().split()[:3]]
    except OSError:
        return None


def targets_lines(targets: Sequence[dict[str, Any]], markdown: bool) -> list[str]:
    """The "targets (informational)" block of a report: a table, or one line per target."""
    if markdown:
        return [markdown_table(["target", "result", "detail"],
                               [[t["target"], f"**{t['status']}**", t["detail"]] for t in targets], "lll")]
    return [f"{t['status']:<4}  {t['target']}: {t['detail']}" for t in targets]


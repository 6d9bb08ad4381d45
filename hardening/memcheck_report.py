"""Reads the valgrind memcheck logs of one run (build/memcheck/<mode>/vg.<pid>.log, one per
process: the pytest process, its forked children and the Python subprocesses tests start)
and gives the verdict of campaign 2 of issue 7.

Pass criterion: in every process, 0 memcheck errors and 0 bytes definitely lost.

One class of error is not counted, and only that one, because it is a proven defect of
CPython 3.11 itself and not of anything the interpreter runs (it is fixed in 3.12):
``_PyLong_New(0)`` (every int that comes out as 0 from ``int.from_bytes``, ``int(str)``,
``&``, ... -- importlib does this for each .pyc it reads) leaves ``ob_digit[0]``
uninitialised, and ``maybe_small_long`` computes ``Py_SIZE(v) * ob_digit[0]`` = ``0 * ?``
to pick the cached small int 0. Memcheck cannot know that 0 * anything is defined, so the
*pointer* to the small int 0 is marked undefined, and every later ``Py_INCREF``/``Py_DECREF``
/``Py_TYPE`` through a copy of that pointer is reported. Suppressions cannot express
"whose undefined bits come from there" (they match the error's stack, and these stacks are
anywhere in the interpreter); ``--track-origins=yes`` can, so an error is classed as that
defect when *all* of these hold:

* it is an undefined-value error (conditional jump / use of uninitialised value),
* its origin is a heap block allocated by ``_PyLong_New``,
* neither its stack nor its origin's stack has a frame in our extension
  (``tieredcache/_core``) or our C sources (``csrc/``).

Everything else -- invalid reads and writes, bad frees, undefined values from anywhere
else, any error touching our code, any byte definitely lost -- fails the run. Processes
whose log has no summary (a child that exec'd a skipped program such as redis-server, or
was killed by the test on purpose) are listed; their error blocks still count.

usage: memcheck_report.py LOGDIR   (exit 0 = pass, 1 = fail; last line is the figures)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUR_CODE = re.compile(r"tieredcache/_core|_core\.cpython|csrc/|\((?:cachedcall|clock|fence|localcache|lock|"
                      r"module|policy|sketch|store|tags|wheel)\.c:")
ERROR_START = re.compile(
    r"^(Conditional jump|Use of uninitialised|Invalid (read|write|free)|Syscall param|"
    r"Mismatched free|Source and destination overlap|Argument '|Process terminating|"
    r"\d[\d,]* bytes in [\d,]+ blocks are definitely lost|Jump to the invalid address|"
    r"Warning: invalid file descriptor|.*(unaddressable|uninitialised))")
UNDEF = re.compile(r"^(Conditional jump or move depends on uninitialised|Use of uninitialised value)")


@dataclass
class Error:
    lines: list[str]
    origin: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.lines[0]

    def is_cpython311_zero_long(self) -> bool:
        if not UNDEF.match(self.kind.strip()) or not self.origin:
            return False
        frames = [l for l in self.origin[1:] if l.lstrip().startswith(("at ", "by "))]
        allocator = ("malloc", "calloc", "realloc", "PyMem_RawMalloc", "_PyMem_RawMalloc", "PyObject_Malloc")
        first_ours = next((f for f in frames if not any(f"{a} " in f for a in allocator)), "")
        return ("heap allocation" in self.origin[0] and "_PyLong_New " in first_ours
                and not any(OUR_CODE.search(l) for l in self.lines + self.origin))


@dataclass
class Process:
    log: Path
    pid: str
    command: str = "?"
    errors: list[Error] = field(default_factory=list)
    error_total: int | None = None        # from ERROR SUMMARY
    definitely_lost: int | None = None    # bytes, from LEAK SUMMARY


def parse(log: Path) -> Process:
    text = log.read_text(errors="replace")
    proc = Process(log, log.stem.split(".")[-1])
    blocks: list[list[str]] = []
    cur: list[str] = []
    for raw in text.splitlines():
        m = re.match(r"^==(\d+)== ?(.*)$", raw)
        if not m:
            continue  # --log-file holds only valgrind's lines; be lenient anyway
        line = m.group(2)
        if line.strip() == "":
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append(cur)
    for block in blocks:
        head = block[0].strip()
        for line in block:
            if line.startswith("Command:") and proc.command == "?":
                proc.command = line[len("Command:"):].strip()
            m = re.match(r"^\s*definitely lost: ([\d,]+) bytes", line)
            if m:
                proc.definitely_lost = int(m.group(1).replace(",", ""))
            m = re.match(r"^ERROR SUMMARY: ([\d,]+) errors", line)
            if m:
                proc.error_total = int(m.group(1).replace(",", ""))
        if ERROR_START.match(head) and not head.startswith("ERROR SUMMARY"):
            # With --track-origins the origin follows the stack in the same block.
            cut = next((i for i, l in enumerate(block)
                        if l.strip().startswith("Uninitialised value was created")), len(block))
            proc.errors.append(Error(block[:cut], block[cut:]))
    return proc


def main(logdir: str) -> int:
    logs = sorted(Path(logdir).glob("vg.*.log"))
    if not logs:
        print(f"memcheck: no valgrind logs in {logdir}")
        print("MEMCHECK processes=0 errors=? definitely_lost=?")
        return 1
    procs = [parse(p) for p in logs]
    bad_contexts = 0
    noise_contexts = 0
    lost = 0
    no_summary = []
    total_errors = 0
    for proc in procs:
        real = [e for e in proc.errors if not e.is_cpython311_zero_long()]
        noise_contexts += len(proc.errors) - len(real)
        bad_contexts += len(real)
        lost += proc.definitely_lost or 0
        total_errors += proc.error_total or 0
        if proc.error_total is None:
            no_summary.append(proc)
        for e in real:
            print(f"\n*** {proc.log} (pid {proc.pid}: {proc.command[:160]})")
            print("\n".join("    " + l for l in e.lines))
            if e.origin:
                print("\n".join("    " + l for l in e.origin))
    print(f"\nmemcheck: {len(procs)} process logs; {len(no_summary)} without a summary "
          f"(exec'd a skipped program, or killed):")
    for proc in no_summary[:10]:
        print(f"    pid {proc.pid}: {proc.command[:120]}")
    counted = [p for p in procs if p.error_total is not None]
    print(f"memcheck: {total_errors} errors reported by valgrind in total; "
          f"{noise_contexts} error contexts are CPython 3.11's uninitialised zero-int digit "
          f"(origin _PyLong_New, nowhere near our code); {bad_contexts} other error contexts; "
          f"{lost} bytes definitely lost (in {len(counted)} processes with a leak summary)")
    ok = bad_contexts == 0 and lost == 0
    print(f"MEMCHECK processes={len(procs)} error_contexts={bad_contexts} "
          f"cpython311_zero_long_contexts={noise_contexts} definitely_lost={lost} "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Flame graphs of the Genesis-Flow tiers during a benchmark phase, recorded with py-spy.

`Profiler(dest).phase(name, {tier: pid})` is a context manager: it attaches one `py-spy record`
per tier process for the duration of the block and leaves `<dest>/<name>-<tier>.svg` (an
interactive flame graph) next to a `.txt` of the hottest frames (py-spy's `--format raw`
collapsed stacks, summed per leaf function), so a profile can be read in a terminal and
committed with the results.

py-spy samples from outside the process (ptrace), so the tiers run unmodified; it needs the
permission to attach (root, or `kernel.yama.ptrace_scope=0`). When it cannot attach, the
phase runs unprofiled and the reason is kept in `Profiler.errors`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE = 100  # samples/s per recorder (two per process: flame graph + raw stacks); cheap on 2 cores


def _py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def top_frames(collapsed: str, n: int = 25) -> list[tuple[str, int, float]]:
    """(leaf frame, samples, share of all samples) from py-spy's collapsed-stack text, hottest first.

    Each line is `frame;frame;...;leaf <count>`; the leaf is where the time was spent."""
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaves[stack.rsplit(";", 1)[-1]] += int(count)
        total += int(count)
    return [(frame, k, round(k / total, 4)) for frame, k in leaves.most_common(n)] if total else []


class Profiler:
    def __init__(self, dest: Path):
        self.dest = dest
        self.errors: list[str] = []
        self.files: list[str] = []
        self.exe = _py_spy()

    @contextlib.contextmanager
    def phase(self, name: str, pids: dict[str, int]) -> Iterator[None]:
        if self.exe is None:
            self.errors.append("py-spy is not installed (pip install py-spy)")
            yield
            return
        self.dest.mkdir(parents=True, exist_ok=True)
        procs: list[tuple[str, Path, subprocess.Popen]] = []
        for tier, pid in pids.items():
            for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".collapsed")):
                out = self.dest / f"{name}-{tier}{suffix}"
                cmd = [self.exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", fmt,
                       "--output", str(out), "--nonblocking"]
                procs.append((tier, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        try:
            yield
        finally:
            for tier, out, proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for tier, out, proc in procs:
                try:
                    _, err = proc.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                if out.exists():
                    self.files.append(str(out))
                    if out.suffix == ".collapsed":
                        self._summarise(out)
                else:
                    self.errors.append(f"{name}/{tier}: {err.decode(errors='replace').strip()[-300:]}")

    def _summarise(self, collapsed: Path) -> None:
        rows = top_frames(collapsed.read_text(errors="replace"))
        text = "\n".join(f"{100 * share:5.1f}%  {k:7d}  {frame}" for frame, k, share in rows)
        txt = collapsed.with_suffix(".top.txt")
        txt.write_text(f"hottest leaf frames of {collapsed.name} (share of samples, samples, frame)\n{text}\n")
        self.files.append(str(txt))
        collapsed.unlink()  # the flame graph and the summary carry it; raw stacks are large

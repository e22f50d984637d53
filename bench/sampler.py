"""A small in-process sampling profiler for the gateway under a benchmark (`bench.run --profile`).

    python -m bench.sampler OUT.txt -m app.cli serve --port 8080

runs the module as `__main__` with a SIGPROF timer that, every 2 ms of the process's CPU time, records
the Python stack the main thread is running. py-spy cannot follow SQLAlchemy's greenlets; this sees
the running greenlet's own frames at least. Samples whose innermost frame is the event loop's own
run call (its C code, or another thread's CPU) are counted apart. At exit OUT.txt gets each function's
share of the samples in Python (inclusive and self) and the folded stacks (`a;b;c count`, for
flamegraph.pl or speedscope). Its first lines also say how much CPU the garbage collector took, by
generation (a collection runs inside whatever allocated last, so its samples are spread over the
functions that happened to allocate).
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType

INTERVAL = 0.002
# Innermost frames that mean the loop is waiting for I/O: no CPU spent in Python.
_IDLE = {("runners.py", "run"), ("base_events.py", "run_forever"), ("base_events.py", "_run_once"),
         ("server.py", "serve"), ("server.py", "_serve"), ("main.py", "run")}


def _label(frame: FrameType) -> tuple[str, str, str]:
    code = frame.f_code
    path = code.co_filename
    short = path.split("site-packages/")[-1] if "site-packages/" in path else os.path.relpath(path)
    return Path(path).name, code.co_name, f"{short}:{code.co_name}"


class Sampler:
    """Samples on SIGPROF, every INTERVAL of this process's CPU time: the handler runs in the main thread
    between two bytecodes and reads the stack it interrupted. (A sampling thread would see the main
    thread mostly where it releases the GIL, such as os.urandom, and not where it spends its time.)"""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self.idle = 0
        self.gc_runs: Counter[int] = Counter()
        self.gc_cpu: dict[int, float] = defaultdict(float)
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.process_time()
        else:
            self.gc_runs[info["generation"]] += 1
            self.gc_cpu[info["generation"]] += time.process_time() - self._gc_started

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        if frame is None:
            return
        leaf = _label(frame)
        if (leaf[0], leaf[1]) in _IDLE:  # CPU of other threads (or of the loop's own C code)
            self.idle += 1
            return
        stack: list[str] = []
        f: FrameType | None = frame
        while f is not None:
            stack.append(_label(f)[2])
            f = f.f_back
        self.stacks[tuple(reversed(stack))] += 1

    def dump(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        busy = sum(self.stacks.values())
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            for name in set(stack):
                inclusive[name] += n
            own[stack[-1]] += n
        cpu = max(time.process_time(), 1e-9)
        collected = ", ".join(f"gen{g} {self.gc_runs[g]} runs {self.gc_cpu[g]:.2f} s" for g in sorted(self.gc_runs))
        lines = [f"samples every {INTERVAL * 1000:.0f} ms of CPU: {busy} in Python, {self.idle} in the loop itself",
                 f"garbage collection: {sum(self.gc_cpu.values()):.2f} s of {cpu:.1f} s CPU "
                 f"({100 * sum(self.gc_cpu.values()) / cpu:.1f} %): {collected or 'none'}",
                 "", "inclusive %  self %  function"]
        for name, n in inclusive.most_common(120):
            lines.append(f"{100 * n / max(busy, 1):10.1f} {100 * own[name] / max(busy, 1):7.1f}  {name}")
        lines += ["", "self %  function"]
        for name, n in own.most_common(60):
            lines.append(f"{100 * n / max(busy, 1):6.1f}  {name}")
        lines += ["", "folded stacks"]
        lines += [f"{';'.join(stack)} {n}" for stack, n in self.stacks.most_common()]
        self.out.write_text("\n".join(lines) + "\n")


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: python -m bench.sampler OUT.txt -m MODULE [args ...]")
    out, module = Path(sys.argv[1]), sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    sampler = Sampler(out)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; this handler turns that into SystemExit
    # (the default one would end the process before the profile is written)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sampler.start()
    started = time.monotonic()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sampler.dump()
        print(f"bench.sampler: {time.monotonic() - started:.0f} s profiled into {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Run every benchmarks/bench_*.py (or the ones named) and stream their output.

Each benchmark runs in its own process with this interpreter (the project's .venv when started
by `make bench`), so one benchmark's imports and warm caches cannot flatter another. Exit
status is non-zero when any benchmark fails. Record the figures in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def discover(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if not names:
        return found
    wanted = []
    for name in names:
        stem = name.removesuffix(".py")
        stem = stem if stem.startswith("bench_") else f"bench_{stem}"
        match = [p for p in found if p.stem == stem]
        if not match:
            known = ", ".join(p.stem for p in found) or "none"
            raise SystemExit(f"no benchmark {name!r} in {HERE} (have: {known})")
        wanted.extend(match)
    return wanted


def cpu_model() -> str:
    """CPU model name (Linux /proc/cpuinfo), else whatever platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run, e.g. decoder (default: all)")
    args = parser.parse_args(argv)

    benches = discover(args.names)
    if not benches:
        print(f"no benchmarks/bench_*.py found in {HERE}", file=sys.stderr)
        return 1
    print(
        f"# python {platform.python_version()} ({sys.executable})\n"
        f"# {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        flush=True,
    )
    results = []
    for bench in benches:
        print(f"\n## {bench.stem}  ({bench.relative_to(ROOT)})", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(bench)], cwd=ROOT, check=False)
        elapsed = time.perf_counter() - start
        results.append((bench.stem, proc.returncode, elapsed))
        print(f"-- {bench.stem}: exit {proc.returncode} in {elapsed:.1f} s", flush=True)

    print("\n## summary")
    for name, code, elapsed in results:
        print(f"  {name:<30} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {elapsed:7.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

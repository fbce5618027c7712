"""Wall time of `osmf demo` end to end against its budget (5 minutes on a 2-core CPU, issue 6).

    python bench/demo.py [--budget 300] [--tiny] [--keep]

Runs the real CLI in a fresh artifact root (no cache hits: world generation and every stage run),
streams its output, then prints the wall time, the ratio to the budget, and when each stage finished
(manifest write times; the local runtime runs stages one after another, so the gap between two is
the later stage's duration). The machine's cores and load average are printed too: on a shared
machine the same run takes longer. Exit status: the demo's (the budget is reported, not enforced).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osmf_core.layout import MANIFEST, World

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 300.0


def osmf_command() -> list[str]:
    beside = Path(sys.executable).with_name("osmf")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "osmf_operator.cli"]


def stage_finish_times(artifacts: Path, start: float) -> list[tuple[float, str]]:
    """(seconds after start, 'Kind/name') for every finished run under the artifact root, in order."""
    rows = []
    world = artifacts / "demo-world" / World.WORLD
    if world.is_file():
        rows.append((world.stat().st_mtime - start, "synthetic world"))
    for manifest in artifacts.rglob(MANIFEST):
        try:
            doc = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if "kind" in doc and "inputHash" in doc:
            rows.append((manifest.stat().st_mtime - start, f"{doc['kind']}/{doc.get('name', '?')}"))
    return sorted(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds (default 300)")
    parser.add_argument("--tiny", action="store_true", help="the tiny world (a smoke run, not the benchmark)")
    parser.add_argument("--keep", action="store_true", help="keep the artifact root and print its path")
    args = parser.parse_args(argv)

    artifacts = Path(tempfile.mkdtemp(prefix="osmf-bench-demo-"))
    command = [*osmf_command(), "demo", "--artifacts", str(artifacts), *(["--tiny"] if args.tiny else [])]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"$ {' '.join(command)}\n  cores {os.cpu_count()}, load average {load:.2f} at start", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    code = subprocess.call(command, cwd=ROOT, env=env)
    wall = time.time() - start

    print("\nstage finished at (s)   took (s)   stage")
    previous = 0.0
    for at, label in stage_finish_times(artifacts, start):
        print(f"  {at:10.1f}   {at - previous:10.1f}   {label}")
        previous = at
    verdict = "within" if wall <= args.budget else "OVER"
    print(f"\nosmf demo{' --tiny' if args.tiny else ''}: exit {code}, wall {wall:.1f} s, budget {args.budget:.0f} s, "
          f"ratio {wall / args.budget:.2f} ({verdict} budget); load average now {os.getloadavg()[0]:.2f}")
    print(json.dumps({"bench": "demo", "tiny": args.tiny, "exit": code, "wall_s": round(wall, 1), "budget_s": args.budget,
                      "ratio": round(wall / args.budget, 3), "cores": os.cpu_count()}))
    if args.keep:
        print(f"artifacts kept in {artifacts}")
    else:
        shutil.rmtree(artifacts, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

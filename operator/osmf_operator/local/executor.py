"""Runs a JobRequest on this machine: the job's entry point as subprocesses, one per shard.

It mirrors what the Job would do in a cluster: the same config JSON, JOB_COMPLETION_INDEX per shard,
pod retries up to runPolicy.backoffLimit, and an immediate failure on the invalid-input exit code
(the Job's podFailurePolicy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from osmf_core.api import INVALID_INPUT_EXIT_CODE, KINDS
from osmf_core.layout import progress_files
from osmf_core.store import open_store

from ..reconcile import JobRequest, ObservedJob

ProgressCallback = Callable[[JobRequest, list[dict]], None]


@dataclass
class ShardResult:
    index: int
    returncode: int
    last_line: str
    attempts: int


def read_progress(request: JobRequest) -> list[dict]:
    store = open_store(request.config["run"]["uri"])
    docs = []
    for rel in progress_files(request.step.sharded, request.shards):
        try:
            doc = store.read_json(rel)
        except (OSError, ValueError):
            continue
        if doc.get("step") == request.step.name:
            docs.append(doc)
    return docs


class LocalExecutor:
    def __init__(self, workdir: Path, env: dict[str, str] | None = None, parallel: int | None = None,
                 on_progress: ProgressCallback | None = None, log_dir: Path | None = None,
                 modules: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env or {}
        self.modules = modules or {}  # kind → job module; tests substitute stand-in jobs here
        self.parallel = max(1, parallel or min(2, os.cpu_count() or 1))
        self.on_progress = on_progress
        self.log_dir = Path(log_dir) if log_dir else self.workdir / "logs"

    def command(self, request: JobRequest, config_path: Path) -> list[str]:
        module = self.modules.get(request.kind, KINDS[request.kind].job_module)
        return [sys.executable, "-m", module, "--config", str(config_path)]

    def run_shard(self, request: JobRequest, config_path: Path, index: int) -> ShardResult:
        # Shards run side by side: split the cores between them instead of oversubscribing.
        threads = str(max(1, (os.cpu_count() or 1) // min(self.parallel, request.shards)))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": threads, **self.env,
               "JOB_COMPLETION_INDEX": str(index)}
        log_path = self.log_dir / f"{request.name}-{index}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = request.run_policy.backoff_limit + 1
        result = ShardResult(index, 1, "", 0)
        for attempt in range(1, attempts + 1):
            with open(log_path, "ab") as log:
                log.write(f"--- attempt {attempt}\n".encode())
                log.flush()
                proc = subprocess.run(self.command(request, config_path), env=env, stdout=log, stderr=subprocess.PIPE)
                log.write(proc.stderr)
            lines = [l for l in proc.stderr.decode(errors="replace").splitlines() if l.strip()]
            result = ShardResult(index, proc.returncode, lines[-1] if lines else "", attempt)
            if proc.returncode in (0, INVALID_INPUT_EXIT_CODE):
                break
        return result

    def run(self, request: JobRequest) -> ObservedJob:
        """Run every shard to completion and report the Job's final state."""
        config_dir = Path(tempfile.mkdtemp(prefix="osmf-config-", dir=self.workdir))
        config_path = config_dir / f"{request.name}.json"
        config_path.write_text(json.dumps(request.config, indent=2))
        results: list[ShardResult] = []
        pending = list(range(request.shards))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    index = pending.pop(0)
                outcome = self.run_shard(request, config_path, index)
                with lock:
                    results.append(outcome)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.parallel, request.shards))]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            if self.on_progress:
                self.on_progress(request, read_progress(request))
            time.sleep(0.5)
        if self.on_progress:
            self.on_progress(request, read_progress(request))
        return self.observed(request, sorted(results, key=lambda r: r.index))

    def observed(self, request: JobRequest, results: list[ShardResult]) -> ObservedJob:
        failed = [r for r in results if r.returncode != 0]
        base = dict(name=request.name, step=request.step.name, input_hash=request.input_hash)
        if not failed:
            return ObservedJob(**base, phase="Succeeded")
        first = failed[0]
        log = self.log_dir / f"{request.name}-{first.index}.log"
        if first.returncode == INVALID_INPUT_EXIT_CODE:
            return ObservedJob(**base, phase="Failed", reason="PodFailurePolicy",
                               message=f"{first.last_line} (log: {log})", failed_pods=first.attempts)
        return ObservedJob(**base, phase="Failed", reason="BackoffLimitExceeded",
                           message=f"exit code {first.returncode} after {first.attempts} attempt(s): {first.last_line} (log: {log})",
                           failed_pods=first.attempts)

"""The job runtime contract every job uses (docs/contracts.md).

A job is `main(ctx)` plus its config model (`JobConfig[<Kind>Spec]`, in the job's `config.py`);
`run_job(main, Config)` loads and validates the one JSON config with that model (the spec becomes
the typed spec there, once), builds the context, and maps outcomes to exit codes: 0 done, 65
invalid input (the Job fails at once), 75 retriable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from osmf_core.api import INVALID_INPUT_EXIT_CODE, KINDS, RETRIABLE_EXIT_CODE, JobConfig
from osmf_core.api.resource import format_errors
from osmf_core.layout import MANIFEST, PROGRESS, join, shard_dir
from osmf_core.store import ArtifactStore, StoreError, file_digest, open_store

PROGRESS_INTERVAL_SECONDS = 5.0


class InvalidInput(Exception):
    """The job's input is wrong; retrying cannot help. The message is one line naming what and how to fix."""


class Retriable(Exception):
    """A transient failure (storage, preemption); the Job retries within its backoffLimit."""


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DistributedEnv:
    """torchrun's environment; a plain process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistributedEnv":
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class JobContext:
    config: JobConfig
    shard_index: int = 0
    dist: DistributedEnv = field(default_factory=DistributedEnv)
    started: str = field(default_factory=now_rfc3339)
    _last_progress: float = 0.0
    _progress_started: float = field(default_factory=time.monotonic)

    @property
    def spec(self) -> Any:
        """The kind's typed spec (validated when the config was loaded)."""
        return self.config.spec

    @property
    def step(self) -> str:
        return self.config.step

    @property
    def shard_count(self) -> int:
        return self.config.shards

    @cached_property
    def store(self) -> ArtifactStore:
        """The run directory."""
        return open_store(self.config.run.uri)

    @property
    def step_is_sharded(self) -> bool:
        return any(s.name == self.step and s.sharded for s in KINDS[self.config.kind].steps)

    @property
    def shard_store(self) -> ArtifactStore:
        """Where this shard writes (shards/<i>/ of the run directory)."""
        return self.store.child(shard_dir(self.shard_index))

    def finished_shards(self, done_file: str, step: str) -> list[tuple[ArtifactStore, dict[str, Any]]]:
        """(store, done document) of every shard of this run, each checked to have finished `step`
        for this shard count; what a merge step reads first."""
        out = []
        for index in range(self.shard_count):
            shard = self.store.child(shard_dir(index))
            if not shard.exists(done_file):
                raise InvalidInput(f"shard {index} of {self.shard_count} did not finish ({join(shard.uri, done_file)} missing); re-run the {step} step")
            done = shard.read_json(done_file)
            if done.get("shards") != self.shard_count:
                raise InvalidInput(f"{join(shard.uri, done_file)} is from a run with {done.get('shards')} shards, not {self.shard_count}; re-run the {step} step")
            out.append((shard, done))
        return out

    def my_products(self, products: list[str]) -> list[str]:
        """This shard's products: every shard_count-th of the sorted list (independent of input order)."""
        return shard_products(products, self.shard_index, self.shard_count)

    def input_store(self, name: str) -> ArtifactStore:
        if name not in self.config.inputs:
            raise InvalidInput(f"config inputs: '{name}' is missing; the {self.config.kind} needs it")
        return open_store(self.config.inputs[name].uri)

    def has_input(self, name: str) -> bool:
        return name in self.config.inputs

    @cached_property
    def scratch(self) -> Path:
        """A local working directory for this process."""
        return Path(tempfile.mkdtemp(prefix=f"osmf-{self.config.kind.lower()}-{self.step}-"))

    def progress(self, current: int, total: int, metrics: dict[str, float] | None = None, force: bool = False) -> None:
        """Report progress of the running step; written at most every few seconds unless forced."""
        if not self.dist.is_main:
            return
        now = time.monotonic()
        if not force and current < total and now - self._last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_progress = now
        elapsed = now - self._progress_started
        eta = elapsed / current * (total - current) if current > 0 and total >= current else None
        doc = {
            "step": self.step,
            "current": int(current),
            "total": int(total),
            "percent": round(100.0 * current / total, 2) if total else 0.0,
            "etaSeconds": round(eta, 1) if eta is not None else None,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "updated": now_rfc3339(),
        }
        target = self.shard_store if self.step_is_sharded else self.store
        try:
            target.write_json(PROGRESS, doc)
        except (OSError, StoreError):
            pass  # progress is advisory; never fail a job over it

    def write_manifest(self, metrics: dict[str, Any], extra: dict[str, Any] | None = None,
                       discard: tuple[str, ...] = ()) -> dict[str, Any]:
        """List every file of the run with size and sha256, then write manifest.json last.

        `discard`: prefixes of working files (checkpoints) left out of the manifest and removed once
        it is written (a kill in between leaves them behind, harmlessly: the run is complete)."""
        files = []
        for rel in self.store.list():
            if rel == MANIFEST or rel.endswith(PROGRESS) or any(rel.startswith(f"{p}/") for p in discard):
                continue
            size, digest = file_digest(self.store, rel)
            files.append({"path": rel, "size": size, "sha256": digest})
        config = self.config
        manifest = {
            "apiVersion": config.api_version,
            "kind": config.kind,
            "name": config.metadata.name,
            "namespace": config.metadata.namespace,
            "uid": config.metadata.uid,
            "generation": config.metadata.generation,
            "inputHash": config.run.input_hash,
            "inputs": [
                {"name": name, "kind": art.kind, "uri": art.uri, "digest": art.digest}
                for name, art in sorted(config.inputs.items())
            ],
            "codeVersion": config.code_version,
            "metrics": metrics,
            "startTime": self.started,
            "endTime": now_rfc3339(),
            "files": files,
            **(extra or {}),
        }
        self.store.write_json(MANIFEST, manifest)
        for prefix in discard:
            self.store.delete(prefix)
        return manifest


def shard_products(products: list[str], index: int, count: int) -> list[str]:
    """Shard `index` of `count` takes every count-th product of the sorted list."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return sorted(products)[index::count]


def load_config(text: str, model: type[JobConfig] = JobConfig) -> JobConfig:
    """The config validated with `model` (a job's own config model takes its kind only); problems
    in the spec are named by their field path (`spec.data.uri`), the rest as `config.<field>`."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"config: not valid JSON ({error.msg} at line {error.lineno})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = format_errors(error, "config")
        raise InvalidInput("; ".join(p.removeprefix("config.") if p.startswith("config.spec") else p for p in problems)) from None


def build_context(config: JobConfig) -> JobContext:
    return JobContext(
        config=config,
        shard_index=int(os.environ.get("JOB_COMPLETION_INDEX", 0)),
        dist=DistributedEnv.from_env(),
    )


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def argument_parser() -> argparse.ArgumentParser:
    """The command line every job accepts (the operator's Job command must parse with it)."""
    parser = argparse.ArgumentParser(description="Run one OSMF job step from its JSON config.")
    parser.add_argument("--config", required=True, help="path of the job config JSON ('-' reads stdin)")
    return parser


def run_job(main: Callable[[JobContext], None], config_model: type[JobConfig], argv: list[str] | None = None) -> None:
    """Entry point of every job: parse --config, load it with the job's `config_model`, run
    main(ctx), exit with the contract's code."""
    args = argument_parser().parse_args(argv)
    # Libraries' deprecation notices are not the job's output: on failure the job's one line must be
    # the whole of stderr (it becomes the pod's termination message and the resource's condition).
    warnings.simplefilter("ignore", FutureWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ctx: JobContext | None = None
    code = 0
    try:
        text = sys.stdin.read() if args.config == "-" else Path(args.config).read_text()
        ctx = build_context(load_config(text, config_model))
        main(ctx)
    except (InvalidInput, FileNotFoundError) as error:  # a missing file is the input's fault
        print(f"osmf: invalid input: {one_line(error)}", file=sys.stderr)
        code = INVALID_INPUT_EXIT_CODE
    except (Retriable, StoreError, ConnectionError, TimeoutError) as error:
        print(f"osmf: retriable failure: {one_line(error)}", file=sys.stderr)
        code = RETRIABLE_EXIT_CODE
    except BaseException as error:  # noqa: BLE001 - classify OOM, re-raise everything else
        if not is_out_of_memory(error):
            raise
        print(f"osmf: retriable failure: out of memory: {one_line(error)}", file=sys.stderr)
        code = RETRIABLE_EXIT_CODE
    finally:
        remove_scratch(ctx)
    exit_with(code)


def exit_cli(main: Callable[[], int | None]) -> None:
    """Entry point of the command-line tools that read parquet (synth, evaluate, lift, paag): run
    `main` and end through `exit_with`, because Arrow's parquet thread pool can abort interpreter
    teardown (apache/arrow#34314)."""
    exit_with(main() or 0)


EXIT_CODE_DIR_ENV = "OSMF_EXIT_CODE_DIR"


def exit_with(code: int) -> None:
    """Exit with a contract code, at once. The work is over (outputs written, the message printed);
    skipping the interpreter's teardown avoids native thread pools aborting it mid-way ("terminate
    called without an active exception", exit -6), which turned a 65 into a retried crash. Under
    `osmf_jobs.launch` the code is also recorded, since torchrun turns any failed worker into 1."""
    folder = os.environ.get(EXIT_CODE_DIR_ENV)
    if folder:
        Path(folder, f"rank-{os.environ.get('RANK', '0')}").write_text(str(code))
    sys.stdout.flush()
    sys.stderr.flush()
    hard_exit(code)


hard_exit = os._exit  # tests running run_job in-process replace it


def remove_scratch(ctx: JobContext | None) -> None:
    """Local runs share /tmp with everything else: downloads and caches must not outlive the job."""
    if ctx is not None and "scratch" in ctx.__dict__:  # the cached_property was used
        shutil.rmtree(ctx.scratch, ignore_errors=True)

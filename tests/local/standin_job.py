"""A stand-in job for the local runtime's own tests: the real job runtime contract, trivial work.

Behaviour comes from environment variables so one module can play every kind:
STANDIN_LOG (append "<kind>/<name>:<step>:<shard>" per run), STANDIN_INVALID ("<name>" exits 65),
STANDIN_FLAKY_DIR (first attempt of each step exits 75, later ones succeed).
"""

from __future__ import annotations

import os
from pathlib import Path

from osmf_core.api import KINDS, JobConfig
from osmf_jobs.runtime import InvalidInput, JobContext, Retriable, run_job


def main(ctx: JobContext) -> None:
    name = ctx.config.metadata.name
    tag = f"{ctx.config.kind}/{name}:{ctx.step}:{ctx.shard_index}"
    if os.environ.get("STANDIN_LOG"):
        with open(os.environ["STANDIN_LOG"], "a") as log:
            log.write(tag + "\n")
    if os.environ.get("STANDIN_INVALID") == name:
        raise InvalidInput(f"table 'users': column 'age_band' missing (stand-in for {name})")
    flaky = os.environ.get("STANDIN_FLAKY_DIR")
    if flaky:
        marker = Path(flaky) / tag.replace("/", "_").replace(":", "_")
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("failed once")
            raise Retriable("storage unreachable (stand-in)")
    for role in ctx.config.inputs:
        if role != "data":
            assert ctx.input_store(role).exists("manifest.json"), f"input {role} has no manifest"
    ctx.progress(1, 1, {"loss": 0.5}, force=True)
    if ctx.step_is_sharded:
        ctx.shard_store.write_json("part.json", {"shard": ctx.shard_index})
        return
    for index in range(ctx.shard_count):  # as the real merges do: every shard of the resource's count
        if ctx.step == "merge" and not ctx.store.exists(f"shards/{index}/part.json"):
            raise InvalidInput(f"shard {index} of {ctx.shard_count} did not finish")
    ctx.store.write_json(f"{ctx.step}.json", {"step": ctx.step, "inputs": sorted(ctx.config.inputs), "shards": ctx.shard_count})
    if ctx.step == KINDS[ctx.config.kind].steps[-1].name:
        ctx.write_manifest({"auroc": 0.75, "pairs": 10, "eval_loss": 1.5, "win_rate": 0.6, "images": 4})


if __name__ == "__main__":
    run_job(main, JobConfig)  # plays every kind

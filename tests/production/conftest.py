"""The production-shape tier (`make test-production`, marker `production`): examples/h100-pipeline as a
platform team applies it, on this CPU machine.

- Every model URI of the example (`s3://osmf-models/<name>`) is replaced by a random-weight model of
  the same architecture family (tests/production/standins.py), saved as sharded safetensors and
  uploaded to the real S3 server (SeaweedFS, tests/conftest.py), so the jobs download it through
  the model resolver as in a cluster.
- The data is a tiny synthetic world in the same bucket; sizes that only make the run long (epochs,
  steps, shards, image size, GPUs per node → 2 CPU ranks) are scaled down, the settings that decide
  how the code runs (FSDP, bf16 → fp32 on CPU, gradient checkpointing, the captioner, the diffusers
  renderer) stay the example's.
- `osmf render` (the operator's own builders) makes every Job; each Job's container command runs
  here as it would in its pod: the operator's torchrun launcher with 2 gloo ranks for the training
  stages, each index of an Indexed Job with its JOB_COMPLETION_INDEX, the ConfigMap's config file,
  the pod's environment (with the multipart threshold lowered in the operator settings so multipart
  transfers really run).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "h100-pipeline"
MODEL_PREFIX = "s3://osmf-models/"
CONFIG_PATH = "/etc/osmf/config.json"
MULTIPART_THRESHOLD_MB = 1  # files above 1 MiB go multipart; boto3 makes parts of at least 5 MiB
MULTIPART_CHUNK_MB = 5
JOB_TIMEOUT_S = 900
WORLD_ATTRIBUTES = ["age", "gender", "income", "device", "household"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.production)


@dataclass
class JobRun:
    kind: str
    name: str
    step: str
    command: list[str]
    env: dict[str, str]
    config: dict[str, Any]
    config_file: Path
    completions: int
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Production:
    root: Path
    bucket: str
    env: dict[str, str]
    jobs: list[JobRun]
    example: dict[str, dict[str, Any]]  # file name -> the scaled resource

    def job(self, kind: str, name: str, step: str) -> JobRun:
        return next(j for j in self.jobs if (j.kind, j.name, j.step) == (kind, name, step))

    def store(self, uri: str):
        from osmf_core.store import open_store

        return open_store(uri)


def scale(docs: dict[str, dict[str, Any]], bucket: str, products: list[str]) -> dict[str, dict[str, Any]]:
    """The example with every model URI pointed at its stand-in in the test bucket and the run-length
    settings scaled down (comments say which). Model URIs without a stand-in fail here."""
    from tests.production.standins import STANDINS

    out = copy.deepcopy(docs)

    def models(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: models(v) for k, v in value.items()}
        if isinstance(value, list):
            return [models(v) for v in value]
        if isinstance(value, str) and value.startswith(MODEL_PREFIX):
            name = value.removeprefix(MODEL_PREFIX)
            assert name in STANDINS, f"the example names {value}; add a stand-in for it to tests/production/standins.py"
            return f"s3://{bucket}/models/{name}"
        return value

    out = {file: models(doc) for file, doc in out.items()}
    for doc in out.values():
        spec = doc["spec"]
        resources = spec.setdefault("resources", {})
        if resources.get("gpusPerNode", 0) > 1:
            resources["gpusPerNode"] = 2  # torchrun ranks: 2 gloo processes on this CPU
        resources["nodes"] = 1  # one pod (multi-node rendezvous is the cluster tier's)
        if spec.get("shards", 1) > 1:
            spec["shards"] = 2
        kind = doc["kind"]
        if kind == "AudienceGrouping":
            spec["data"]["uri"] = f"s3://{bucket}/data/world"
            spec["userAttributes"] = list(WORLD_ATTRIBUTES)  # the synthetic world's columns
            spec["model"]["epochs"] = 2
            spec["privacy"]["minGroupSize"] = 10  # 400 users, not millions
        elif kind == "GAIPDataset":
            spec["minImpressions"] = 5
        elif kind == "GMLLMTraining":
            steps = 6 if spec["task"] == "pretrain" else 4
            spec["training"].update(epochs=1, maxSteps=steps, batchSize=2, gradientAccumulationSteps=2,
                                    checkpointEverySteps=2, keepCheckpoints=True,
                                    dataLoaderWorkers=1)  # per rank: 2 ranks on 2 cores
        elif kind == "GroupDPORun":
            spec["dpo"].update(rounds=2, samplesPerGroup=2, epochs=1, maxNewTokens=8)
            spec["rendering"].update(size=64, steps=2)
        elif kind == "AdImageCampaign":
            spec["imagesPerGroup"] = 2
            spec["products"] = products
            spec["generation"] = {"maxNewTokens": 8}
            spec["rendering"].update(size=64, steps=2)
    return out


def standin_words(world: Path) -> list[str]:
    """The stand-in LLaVA's word-level vocabulary: templates, style words, the world's titles."""
    import pandas as pd

    from osmf_jobs.gmodel.text import style_vocabulary, template_words, words

    titles = pd.read_parquet(world / "products.parquet")["title"]
    return sorted(template_words() | style_vocabulary() | {w for t in titles for w in words(t)} | {";", ":", "?", ","})


def rendered_jobs(example_dir: Path, settings_file: Path, artifacts: str, root: Path, env: dict[str, str]) -> list[JobRun]:
    """Every Job `osmf render` makes for the scaled example, in creation order, ready to run here."""
    done = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "render", str(example_dir), "--settings", str(settings_file),
                           "--artifacts", artifacts], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    jobs = []
    for doc in (d for d in docs if d["kind"] == "Job"):
        name = doc["metadata"]["name"]
        (text,) = configs[f"{name}-config"]["data"].values()
        config_file = root / "configs" / f"{name}.json"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(text)
        container = doc["spec"]["template"]["spec"]["containers"][0]
        command = [sys.executable if part == "python" else str(config_file) if part == CONFIG_PATH else part for part in container["command"]]
        pod_env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        labels = doc["metadata"]["labels"]
        config = yaml.safe_load(text)
        jobs.append(JobRun(labels["osmf.dev/kind"], config["metadata"]["name"], labels["osmf.dev/step"], command,
                           env | pod_env, config, config_file, doc["spec"].get("completions", 1)))
    return jobs


def run_job(job: JobRun, log_dir: Path, **popen: Any) -> list[subprocess.CompletedProcess]:
    """Each index of the Job, one after the other, as its pods would run it; raises with the log tail on failure."""
    results = []
    started = time.monotonic()
    for index in range(job.completions):
        env = job.env | {"JOB_COMPLETION_INDEX": str(index)}
        log = log_dir / f"{job.kind}-{job.name}-{job.step}-{index}.log"
        with open(log, "w") as handle:
            done = subprocess.run(job.command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=JOB_TIMEOUT_S, cwd=log_dir, **popen)
        text = log.read_text(errors="replace")
        assert done.returncode == 0, f"{job.kind}/{job.name} {job.step}[{index}] exited {done.returncode}:\n{text[-4000:]}"
        job.stderr.append(text)
        results.append(done)
    job.seconds = time.monotonic() - started
    return results


@pytest.fixture(scope="session")
def production(s3_server, tmp_path_factory: pytest.TempPathFactory) -> Production:
    """The scaled h100 example run end to end (every Job, in order) against S3 with the stand-in models."""
    from osmf_core.store import open_store
    from osmf_jobs.synth.world import SynthConfig, generate
    from tests.production.standins import STANDINS

    root = tmp_path_factory.mktemp("production")
    bucket = s3_server.bucket
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OSMF_", "PYTEST"))} | {
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false",
        "OSMF_MODEL_CACHE": str(root / "model-cache"), "PYTHONUNBUFFERED": "1",
    }
    world = root / "world"
    generate(world, SynthConfig.tiny(seed=0))
    open_store(f"s3://{bucket}/data/world").upload(world, "")
    words = standin_words(world)
    for name, build in STANDINS.items():
        build(root / "models" / name, words)
        open_store(f"s3://{bucket}/models/{name}").upload(root / "models" / name, "")

    import pandas as pd

    products = sorted(pd.read_parquet(world / "products.parquet")["product_id"])[:3]
    example = {f"{path.stem}-{i}.yaml": doc for path in sorted(EXAMPLE.glob("*.yaml"))
               for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d)}
    scaled = scale(example, bucket, products)
    example_dir = root / "example"
    example_dir.mkdir()
    for file, doc in scaled.items():
        (example_dir / file).write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump({"artifacts": {
        "rootUri": f"s3://{bucket}/runs", "endpointUrl": s3_server.endpoint, "region": "us-east-1",
        "multipartThresholdMb": MULTIPART_THRESHOLD_MB, "multipartChunkMb": MULTIPART_CHUNK_MB,
    }}))
    jobs = rendered_jobs(example_dir, settings, f"s3://{bucket}/runs", root, env)
    logs = root / "logs"
    logs.mkdir()
    for job in jobs:
        run_job(job, logs)
    timings = ", ".join(f"{j.kind}/{j.step} {j.seconds:.0f}s" for j in jobs)
    print(f"\nproduction pipeline: {timings}", file=sys.stderr)
    return Production(root, bucket, env, jobs, scaled)

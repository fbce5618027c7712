"""The jobs' one model resolver (`osmf_jobs.model_dirs`): local directories in place, S3 downloaded
once per node under an inter-process lock, a half-finished download redone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from osmf_core.store import open_store
from osmf_jobs.model_dirs import MODEL_CACHE_ENV, model_dir
from osmf_jobs.runtime import InvalidInput

REPO = Path(__file__).resolve().parents[2]
FIX = "point it at a model directory"

# A process resolving argv[1] once `argv[2]` exists (so racers start together). Mode "slow" holds
# the download for a while (the other racer arrives while it runs); "die" writes part of the model
# and is killed, as a preempted pod would be.
RESOLVER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    from osmf_core.store import S3Store
    from osmf_jobs.model_dirs import model_dir

    uri, go, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    download = S3Store.download
    if mode == "slow":
        def slow(self, rel, dest):
            time.sleep(1.5)
            return download(self, rel, dest)
        S3Store.download = slow
    elif mode == "die":
        def die(self, rel, dest):
            (Path(dest) / "weights.bin").write_bytes(b"half of it")
            os._exit(9)
        S3Store.download = die
    Path(f"{go}.ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    print(model_dir(uri, "spec.baseModel.uri", "config.json"))
""")


def _model(root: Path) -> Path:
    """A model directory with nested files and a few MB of weights."""
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llava"}')
    (root / "tokenizer" / "vocab.json").write_text('{"a": 0}')
    (root / "weights.bin").write_bytes(os.urandom(4 << 20))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _resolve(tmp_path: Path, uri: str, modes: list[str]) -> list[subprocess.CompletedProcess]:
    """Run one resolver process per mode, released at the same moment."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO / "jobs")])}
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVER, uri, str(go), mode], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for mode in modes]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob(f"{go.name}.ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def _downloads(results: list[subprocess.CompletedProcess]) -> int:
    return sum(r.stderr.count("osmf: downloading s3://") for r in results)


@pytest.fixture
def s3_model(s3_server, tmp_path, monkeypatch) -> tuple[str, dict[str, bytes]]:
    """(URI, files) of a model uploaded to the S3 server; the model cache is this test's own."""
    source = _model(tmp_path / "source")
    uri = f"s3://{s3_server.bucket}/models/{tmp_path.name}"
    open_store(uri).upload(source, "")
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    return uri, _files(source)


def test_concurrent_processes_download_an_s3_model_once(s3_model, tmp_path):
    uri, files = s3_model
    results = _resolve(tmp_path, uri, ["slow", "slow"])
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert _downloads(results) == 1, [r.stderr for r in results]  # the other process waited, then used it
    paths = {Path(r.stdout.strip()) for r in results}
    assert len(paths) == 1
    (path,) = paths
    assert path.is_relative_to(tmp_path / "cache") and _files(path) == files
    assert path.with_name(path.name + ".complete").is_file()


def test_a_download_killed_half_way_is_redone(s3_model, tmp_path):
    uri, files = s3_model
    (killed,) = _resolve(tmp_path, uri, ["die"])
    assert killed.returncode == 9
    (partial,) = [p for p in (tmp_path / "cache" / "s3").iterdir() if p.is_dir()]
    assert _files(partial) == {"weights.bin": b"half of it"}
    assert not partial.with_name(partial.name + ".complete").exists()

    (again,) = _resolve(tmp_path, uri, ["plain"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert _downloads([again]) == 1
    assert Path(again.stdout.strip()) == partial and _files(partial) == files


def test_a_complete_entry_is_used_without_downloading(s3_model, tmp_path):
    uri, files = s3_model
    first = model_dir(uri, "spec.baseModel.uri", "config.json")
    (second,) = _resolve(tmp_path, uri, ["plain"])
    assert second.returncode == 0 and _downloads([second]) == 0
    assert Path(second.stdout.strip()) == first and _files(first) == files


def test_an_s3_prefix_without_the_marker_is_invalid_input(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    uri = f"s3://{s3_server.bucket}/models/{tmp_path.name}-empty"
    open_store(uri).write_bytes("weights.bin", b"x")
    with pytest.raises(InvalidInput, match=rf"^spec.baseModel.uri: {uri} has no config.json; {FIX}$"):
        model_dir(uri, "spec.baseModel.uri", "config.json")
    assert not (tmp_path / "cache").exists()


def test_local_directories_are_used_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    model = _model(tmp_path / "model")
    assert model_dir(str(model), "x", "config.json") == model
    assert model_dir(model.as_uri(), "x", "config.json") == model
    assert model_dir(open_store(model), "x", "config.json") == model
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("uri, problem", [
    ("{tmp}/missing", "{tmp}/missing does not exist"),
    ("{tmp}/model/weights.bin", "{tmp}/model/weights.bin is not a directory"),
    ("{tmp}/model/tokenizer", "{tmp}/model/tokenizer has no config.json"),
    ("hdfs://cluster/model", "hdfs://cluster/model: unsupported URI scheme 'hdfs:'"),
])
def test_unusable_local_uris_are_one_line_invalid_input(tmp_path, uri, problem):
    _model(tmp_path / "model")
    uri, problem = uri.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    with pytest.raises(InvalidInput) as info:
        model_dir(uri, "spec.model.textEncoder", "config.json", FIX)
    assert str(info.value).startswith(f"spec.model.textEncoder: {problem}")
    assert "\n" not in str(info.value)

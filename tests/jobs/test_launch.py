"""`osmf_jobs.launch`: torchrun with the job contract's exit codes (torchrun itself exits 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from osmf_jobs.launch import contract_code
from tests.jobs.conftest import job_config, tiny_grouping_spec

REPO = Path(__file__).resolve().parents[2]


def _launch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.json"
    config.write_text(job_config("AudienceGrouping", tiny_grouping_spec(tmp_path), "train", tmp_path / "run", {}))
    command = [sys.executable, "-m", "osmf_jobs.launch", "--standalone", "--nnodes=1", "--nproc-per-node=2",
               "-m", "tests.local.standin_job", "--config", str(config)]
    path = os.pathsep.join([str(REPO), str(REPO / "jobs"), str(REPO / "operator")])
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env})


def test_invalid_input_in_the_workers_exits_65_not_torchruns_1(tmp_path):
    done = _launch(tmp_path, STANDIN_INVALID="run")
    assert done.returncode == 65, done.stderr[-2000:]
    assert "osmf: invalid input: table 'users'" in done.stderr


def test_a_successful_run_exits_0(tmp_path):
    done = _launch(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "train.json").is_file()


@pytest.mark.parametrize(("torchrun", "codes", "expected"), [
    (0, set(), 0), (1, {65}, 65), (1, {75, 65}, 65), (1, {75}, 75), (1, set(), 1), (-9, set(), -9)])
def test_contract_code(torchrun, codes, expected):
    assert contract_code(torchrun, codes) == expected

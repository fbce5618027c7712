"""Each job loads its config with its own model (`<Kind>Config`): the spec arrives typed, validated
once, and a config of another kind is refused at the entry point with exit 65 and one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.factories import SPECS, job_config_model
from tests.jobs.conftest import job_config

from osmf_core.api import KINDS
from osmf_jobs.runtime import InvalidInput, build_context, load_config

REPO = Path(__file__).resolve().parents[2]


def _config(kind: str, tmp_path: Path, inputs: dict | None = None, **spec) -> str:
    return job_config(kind, SPECS[kind] | spec, KINDS[kind].steps[-1].name, tmp_path / "run", inputs or {})


def _inputs(kind: str, tmp_path: Path) -> dict:
    """An output for every resource the spec references (the job config requires them)."""
    spec = KINDS[kind].spec_model.model_validate(SPECS[kind])
    return {ref.role: (ref.kind, tmp_path / ref.name) for ref in KINDS[kind].references(spec)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_spec_arrives_typed(kind, tmp_path):
    ctx = build_context(load_config(_config(kind, tmp_path, _inputs(kind, tmp_path)), job_config_model(kind)))
    assert isinstance(ctx.spec, KINDS[kind].spec_model) and ctx.spec is ctx.config.spec


def test_a_bad_spec_is_named_by_its_field_path(tmp_path):
    with pytest.raises(InvalidInput, match=r"^spec.data.uri: unsupported URI scheme 'ftp:'") as info:
        load_config(_config("AudienceGrouping", tmp_path, data={"uri": "ftp://logs"}), job_config_model("AudienceGrouping"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_config_of_another_kind_exits_65_with_one_line(kind, tmp_path):
    other = list(KINDS)[(list(KINDS).index(kind) + 1) % len(KINDS)]
    config = tmp_path / "config.json"
    config.write_text(_config(other, tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO / "jobs")])}
    out = subprocess.run([sys.executable, "-m", KINDS[kind].job_module, "--config", str(config)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 65, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"osmf: invalid input: config.kind: this job runs {kind} configs, not {other}; "
                     f"run {KINDS[other].job_module} for a {other}"]

"""Layer and dependency boundaries, checked by tools rather than memory (STYLE §7).

- import-linter's contracts from pyproject.toml: the operator never imports the ML stack or job
  code; job packages never import each other.
- The operator package imports and its CLI works in a process where torch, transformers,
  diffusers, peft, trl, kserve and osmf_jobs cannot be imported: what an install without the
  `train` and `serve` extras looks like.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
JOBS_ROOT = REPO / "jobs" / "osmf_jobs"
# The job packages of docs/contracts.md; everything else under osmf_jobs is a shared library module.
JOB_PACKAGES = ("synth", "grouping", "gaip", "gmllm", "groupdpo", "campaign")
BLOCKED = ("torch", "transformers", "diffusers", "peft", "trl", "kserve", "osmf_jobs")


def importlinter_config() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]


def existing_job_packages() -> list[str]:
    return [f"osmf_jobs.{name}" for name in JOB_PACKAGES if (JOBS_ROOT / name / "__init__.py").is_file()]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(config: dict, path: Path) -> None:
    lines = ["[tool.importlinter]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in config.items() if key != "contracts"]
    for contract in config["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in contract.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def independence_contracts(config: dict) -> list[dict]:
    return [c for c in config.get("contracts", []) if c.get("type") == "independence"]


def test_every_job_package_is_in_the_independence_contract():
    contracts = independence_contracts(importlinter_config())
    assert contracts, "pyproject.toml [tool.importlinter] needs an `independence` contract over the job packages"
    listed = {module for contract in contracts for module in contract["modules"]}
    unlisted = sorted(set(existing_job_packages()) - listed)
    assert unlisted == [], f"add {unlisted} to the job-independence contract in pyproject.toml"


def test_import_contracts_hold(tmp_path):
    """lint-imports over pyproject's contracts; job packages not written yet are left out."""
    config = importlinter_config()
    present = set(existing_job_packages())
    contracts = []
    for contract in config["contracts"]:
        if contract.get("type") == "independence":
            modules = [m for m in contract["modules"] if m in present or not m.startswith("osmf_jobs.")]
            if len(modules) < 2:
                continue  # independence of fewer than two packages says nothing
            contract = {**contract, "modules": modules}
        contracts.append(contract)
    write_config({**config, "contracts": contracts}, tmp_path / "importlinter.toml")
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), str(tmp_path / "importlinter.toml"), "--no-cache", "--no-logo"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


# The same blocker for every subprocess below: importing a blocked package fails as if it were not
# installed, and nothing blocked may end up in sys.modules.
BLOCKER = textwrap.dedent(f"""
    import importlib, pkgutil, sys
    BLOCKED = {BLOCKED!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the operator must not need it)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    def check_nothing_blocked_loaded():
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
""")


def run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKER + textwrap.dedent(code), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_operator_module_imports_without_the_ml_extras(tmp_path):
    result = run_blocked("""
        import osmf_operator
        names = sorted(m.name for m in pkgutil.walk_packages(osmf_operator.__path__, "osmf_operator."))
        for name in names:
            importlib.import_module(name)
        check_nothing_blocked_loaded()
        print("\\n".join(names))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    imported = set(result.stdout.split())
    assert {"osmf_operator.cli", "osmf_operator.crdgen", "osmf_operator.validate", "osmf_operator.reconcile.plan"} <= imported


def test_the_core_imports_without_either_side(tmp_path):
    """What the trainer and predictor images share with the operator image: osmf_core alone."""
    result = run_blocked("""
        BLOCKED = BLOCKED + ("osmf_operator", "kopf", "kubernetes")
        import osmf_core
        names = sorted(m.name for m in pkgutil.walk_packages(osmf_core.__path__, "osmf_core."))
        for name in names:
            importlib.import_module(name)
        check_nothing_blocked_loaded()
        print("\\n".join(names))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert {"osmf_core.api", "osmf_core.store"} <= set(result.stdout.split())


def test_osmf_validate_and_crds_check_run_without_the_ml_extras(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: osmf.dev/v1alpha1\nkind: AudienceGrouping\nmetadata: {name: g}\n"
        "spec: {data: {uri: 'http://x'}, userAttributes: [age], clustering: {minGroups: 4, maxGroups: 3}}\n",
        encoding="utf-8",
    )
    result = run_blocked(f"""
        from osmf_operator.cli import main

        def run(*argv):
            try:
                code = main(list(argv))
            except SystemExit as exit:
                code = exit.code
            print(f"EXIT {{argv[0]}} {{code}}", flush=True)

        run("validate", "examples")
        run("validate", {str(bad)!r})
        run("crds", "--check", "--out", "crds")
        run("crds", "--check", "--out", "charts/osmf/files/crds")
        check_nothing_blocked_loaded()
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    exits = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("EXIT ")]
    assert exits == [["validate", "0"], ["validate", "1"], ["crds", "0"], ["crds", "0"]], result.stdout[-4000:]
    assert "spec.data.uri: unsupported URI scheme" in result.stdout

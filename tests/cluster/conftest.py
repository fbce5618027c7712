"""Session fixtures of the cluster tier: one real control plane for the whole session.

Every test module here sets `pytestmark = pytest.mark.cluster` (deselected by default; run with
`make test-cluster`). Without the binaries (hack/build-control-plane.sh) the tier skips with the
build's error as its reason.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import ControlPlane, FakeNode, find_binaries

HERE = Path(__file__).parent
TEST_VALUES = HERE / "values-test.yaml"
H100_NODES = ("h100-0", "h100-1")
CPU_NODE = "cpu-0"
GPUS_PER_H100_NODE = 8

_CONTROL_PLANE_KEY = pytest.StashKey[ControlPlane]()


def test_values() -> dict[str, Any]:
    """The chart values the tier installs with (operator settings under `settings`)."""
    return yaml.safe_load(TEST_VALUES.read_text())


def fake_nodes(settings: dict[str, Any]) -> list[FakeNode]:
    """H100 nodes that the test settings' default GPU pool selects and tolerates, and a CPU node."""
    pool_name = settings.get("defaultGpuPool", "h100")
    pool = settings["nodePools"][pool_name]
    gpu = pool.get("gpuResource", "nvidia.com/gpu")
    taints = [{"key": t["key"], "value": t.get("value") or "present",
               "effect": t.get("effect") or "NoSchedule"}
              for t in pool.get("tolerations", []) if t.get("key")]
    labels = {**pool.get("nodeSelector", {}),
              "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    nodes = [FakeNode(name, labels, taints,
                      {"cpu": "96", "memory": "1Ti", "pods": "110",
                       gpu: str(GPUS_PER_H100_NODE)})
             for name in H100_NODES]
    nodes.append(FakeNode(CPU_NODE, dict(settings.get("cpuNodeSelector", {})), [],
                          {"cpu": "32", "memory": "128Gi", "pods": "110"}))
    return nodes


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest):
    bins, reason = find_binaries()
    if bins is None:
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="osmf-cluster-"))
    cp = ControlPlane(bins, workdir)
    request.config.stash[_CONTROL_PLANE_KEY] = cp
    try:
        cp.start(kwok_config=HERE / "kwok-stages.yaml")
        cp.add_nodes(fake_nodes(test_values()["settings"]))
    except Exception as error:
        cp.stop()
        raise RuntimeError(f"control plane did not start: {error}\n"
                           f"logs in {cp.logdir}\n{cp.log_tails()}") from None
    yield cp
    cp.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    cp = item.config.stash.get(_CONTROL_PLANE_KEY, None)
    if report.failed and cp is not None:
        report.sections.append(("control plane logs", f"(all logs in {cp.logdir})\n"
                                                      f"{cp.log_tails(20)}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cp = config.stash.get(_CONTROL_PLANE_KEY, None)
    if cp is not None and exitstatus != 0:
        terminalreporter.write_line(f"cluster tier: control plane logs kept in {cp.logdir}")


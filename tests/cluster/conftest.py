"""Session fixtures of the cluster tier: one real control plane for the whole session.

Every test module here sets `pytestmark = pytest.mark.cluster` (deselected by default; run with
`make test-cluster`). Without the binaries (hack/build-control-plane.sh) the tier skips with the
build's error as its reason.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.cluster.chartinstall import (InstalledOperator, RenderedChart, render_chart,
                                        s3_secret, tenant_settings, tier_chart_values)
from tests.cluster.controlplane import REPO, ControlPlane, fake_nodes, find_binaries, tier_values
from tests.cluster.pipeline import (PIPELINE_TIMEOUT_S, PipelineDriver, PipelineRecord,
                                    cluster_pipeline, upload_tiny_world)
from tests.cluster.podbridge import PodBridge
from tests.cluster.s3recorder import S3Recorder

HERE = Path(__file__).parent
_CONTROL_PLANE_KEY = pytest.StashKey[ControlPlane]()


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
        cp.add_nodes(fake_nodes(tier_values()["settings"]))
    except Exception as error:
        cp.stop()
        raise RuntimeError(f"control plane did not start: {error}\n"
                           f"logs in {cp.logdir}\n{cp.log_tails()}") from None
    yield cp
    cp.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def osmf_crds(control_plane):
    """The generated CRDs from crds/, Established on the API server."""
    paths = sorted((REPO / "crds").glob("*.yaml"))
    if not paths:
        pytest.fail("crds/ holds no CRDs: run the CRD generator (osmf crds)")
    return control_plane.install_crds(paths)


@pytest.fixture(scope="session")
def pod_bridge(control_plane):
    """Runs every pod that lands on a fake node as a local process (tests/cluster/podbridge.py)."""
    bridge = PodBridge(control_plane, control_plane.workdir / "pods")
    bridge.start()
    yield bridge
    bridge.stop()


@pytest.fixture(scope="session")
def kserve_crd(control_plane):
    return control_plane.install_crds([HERE / "kserve-crd.yaml"])


@pytest.fixture(scope="session")
def s3_recorder(s3_server):
    """The tenant namespaces' S3 endpoint: records every request, forwards it to SeaweedFS."""
    recorder = S3Recorder(s3_server.endpoint).start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="session")
def rendered_chart(control_plane, s3_server, s3_recorder) -> RenderedChart:
    values = tier_chart_values(tier_values(), s3_server.endpoint, s3_server.bucket,
                               tenant_settings(s3_server.bucket, s3_recorder.endpoint))
    return render_chart(control_plane.bins.helm, values, control_plane.workdir)


@pytest.fixture(scope="session")
def operator(control_plane, osmf_crds, kserve_crd, pod_bridge, rendered_chart):
    """The operator installed from the rendered chart, running with the chart's RBAC only."""
    installed = InstalledOperator(control_plane, pod_bridge, rendered_chart)
    try:
        installed.install()
    except Exception as error:
        raise RuntimeError(f"operator did not start: {error}\n{installed.log()[-3000:]}") from None
    return installed


@pytest.fixture
def workload_ns(control_plane, request):
    """A fresh namespace for a test's resources, holding the artifact store's credentials Secret."""
    name = f"{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    control_plane.create_namespace(name)
    control_plane.apply([s3_secret(name)])
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


PIPELINE_NAMESPACE = "pipeline"


@pytest.fixture(scope="session")
def pipeline(control_plane, operator, pod_bridge, s3_server) -> PipelineRecord:
    """The whole pipeline, applied at once and run to the end with the faults of issue 4 injected."""
    data_uri = upload_tiny_world(s3_server, "world")
    control_plane.create_namespace(PIPELINE_NAMESPACE)
    control_plane.apply([s3_secret(PIPELINE_NAMESPACE)])
    driver = PipelineDriver(control_plane, operator, pod_bridge, s3_server, PIPELINE_NAMESPACE)
    return driver.run(cluster_pipeline(data_uri), timeout=PIPELINE_TIMEOUT_S)


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


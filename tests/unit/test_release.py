"""Release (issue 14, point 1): one version for the package, the chart and the images; the images
the chart and the operator reference are exactly those the release workflow publishes; uv.lock
pins every extra and the images install from it; `make images` finds a builder or says why not.

Rendering needs the locally built helm and linting the workflow the locally built actionlint
(hack/build-control-plane.sh); those tests skip without them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from osmf_operator.settings import Images, OperatorSettings
from tests.unit.test_chart import CHART, HELM, needs_helm, only, render

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
WORKFLOW_PATH = REPO / ".github" / "workflows" / "release.yml"
WORKFLOW = yaml.safe_load(WORKFLOW_PATH.read_text())
IMAGES = ("operator", "trainer", "predictor")
#: The extra each image installs (pyproject.toml), as its Dockerfile must say.
IMAGE_EXTRAS = {"operator": "operator", "trainer": "train", "predictor": "serve"}
#: Import that proves an image's entry point is there (what its ENTRYPOINT or the operator's Jobs run).
IMAGE_PROBES = {"operator": "import osmf_operator.__main__, kopf",
                "trainer": "import osmf_jobs.grouping.__main__, osmf_jobs.gmllm.config, torch",
                "predictor": "import osmf_jobs.serving.__main__, kserve"}
ML_STACK = ("torch", "transformers", "diffusers", "peft", "trl", "kserve", "accelerate")


def version() -> str:
    return PYPROJECT["project"]["version"]


def published_images() -> dict[str, str]:
    """image → repository (no registry) as the release workflow's matrix publishes it."""
    matrix = WORKFLOW["jobs"]["images"]["strategy"]["matrix"]["include"]
    return {entry["image"]: entry["repository"] for entry in matrix}


def has_registry_host(reference: str) -> bool:
    """Docker's rule: a first path component with a dot or a port, or `localhost`, is a registry."""
    first = reference.split("/", 1)[0]
    return "/" in reference and ("." in first or ":" in first or first == "localhost")


# --- one version ---------------------------------------------------------------------------------

def test_package_chart_and_app_versions_are_one():
    assert CHART_META["appVersion"] == CHART_META["version"] == version()
    assert OperatorSettings().code_version == version()


def test_osmf_version_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"osmf {CHART_META['appVersion']}"


# --- the images the chart references are the images the workflow publishes ----------------------

def test_the_workflow_publishes_the_three_images_from_their_dockerfiles():
    assert set(published_images()) == set(IMAGES)
    for image, repository in published_images().items():
        assert (REPO / "images" / image / "Dockerfile").is_file()
        assert repository == f"osmf/{image}" and not has_registry_host(repository)


def test_operator_settings_default_images_are_the_published_ones():
    defaults = Images()
    expected = {image: f"{repo}:{version()}" for image, repo in published_images().items()}
    assert {image: getattr(defaults, image) for image in IMAGES} == expected


@needs_helm
def test_default_render_references_exactly_the_published_images(tmp_path):
    docs = render(tmp_path)
    app_version = CHART_META["appVersion"]
    expected = {f"{repo}:{app_version}" for repo in published_images().values()}
    deployment_images = {c["image"] for d in docs if d["kind"] == "Deployment"
                         for c in d["spec"]["template"]["spec"]["containers"]}
    settings = yaml.safe_load(only(docs, "ConfigMap")["data"]["settings.yaml"])["images"]
    referenced = deployment_images | {settings[name] for name in IMAGES}
    assert referenced == expected
    assert deployment_images == {settings["operator"]} == {f"{published_images()['operator']}:{app_version}"}
    # Every `image` field anywhere in the rendered objects is one of them.
    assert set(image_fields(docs)) <= expected
    assert not [r for r in referenced if has_registry_host(r)]


def image_fields(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + \
            [i for v in node.values() for i in image_fields(v)]
    if isinstance(node, list):
        return [i for v in node for i in image_fields(v)]
    return []


# --- the workflow ----------------------------------------------------------------------------------

def steps(job: str) -> list[dict]:
    return WORKFLOW["jobs"][job]["steps"]


def step_using(job: str, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def test_the_workflow_runs_on_version_tags_only():
    triggers = WORKFLOW[True] if True in WORKFLOW else WORKFLOW["on"]  # YAML 1.1 reads `on` as true
    assert triggers == {"push": {"tags": ["v*"]}}
    assert WORKFLOW["permissions"] == {"contents": "read"}


def test_images_are_scanned_before_they_are_pushed_multi_arch():
    builds = step_using("images", "docker/build-push-action")
    scan = step_using("images", "aquasecurity/trivy-action")
    assert len(builds) == 2 and len(scan) == 1
    order = steps("images")
    local, pushed = builds
    assert order.index(local) < order.index(scan[0]) < order.index(pushed)
    assert local["with"]["load"] is True and not local["with"].get("push")
    assert scan[0]["with"]["image-ref"] == local["with"]["tags"]
    assert scan[0]["with"]["severity"] == "CRITICAL" and scan[0]["with"]["exit-code"] == "1"
    assert pushed["with"]["push"] is True
    assert set(pushed["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert pushed["with"]["file"] == local["with"]["file"] == "images/${{ matrix.image }}/Dockerfile"
    assert pushed["with"]["tags"] == "${{ env.REGISTRY }}/${{ matrix.repository }}:${{ env.VERSION }}"
    assert step_using("images", "docker/setup-qemu-action") and step_using("images", "docker/setup-buildx-action")


def test_the_chart_is_pushed_as_an_oci_artifact_after_the_images():
    chart = WORKFLOW["jobs"]["chart"]
    assert set(chart["needs"]) == {"version", "images"}
    script = " ".join(s.get("run", "") for s in chart["steps"])
    assert "helm package charts/osmf" in script
    assert 'helm push "dist/osmf-$VERSION.tgz" "oci://$REGISTRY/$CHART_REPOSITORY"' in script


def test_registry_coordinates_come_from_variables_and_secrets():
    text = WORKFLOW_PATH.read_text()
    assert re.findall(r"REGISTRY: (.*)", text) == ["${{ vars.OCI_REGISTRY }}"] * 3
    (login,) = step_using("images", "docker/login-action")
    assert login["with"] == {"registry": "${{ vars.OCI_REGISTRY }}",
                             "username": "${{ vars.OCI_USERNAME || github.actor }}",
                             "password": "${{ secrets.OCI_PASSWORD }}"}
    # No host name anywhere (a dotted name under a common top-level domain).
    hosts = re.findall(r"\b(?:[a-z0-9-]+\.)+(?:com|io|org|net|cloud|dev)\b", text, re.IGNORECASE)
    assert hosts == [], hosts


def test_third_party_actions_are_pinned_to_a_commit():
    uses = [s["uses"] for job in WORKFLOW["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def find_actionlint() -> str | None:
    versions = dict(line.split("=", 1) for line in
                    (REPO / "hack" / "control-plane-versions.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    tools = Path(os.environ.get("OSMF_TOOLS_DIR") or Path.home() / ".cache" / "osmf" / "tools")
    built = tools / f"actionlint-{versions['ACTIONLINT_VERSION']}" / "actionlint"
    return str(built) if os.access(built, os.X_OK) else shutil.which("actionlint")


@pytest.mark.skipif(find_actionlint() is None, reason="actionlint not built: run make control-plane")
def test_the_workflow_passes_actionlint():
    result = subprocess.run([find_actionlint(), str(WORKFLOW_PATH)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the lock file and the images' installs ------------------------------------------------------

def test_uv_lock_pins_every_extra_and_matches_pyproject():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "osmf"]
    assert set(project["optional-dependencies"]) == set(PYPROJECT["project"]["optional-dependencies"])
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed (make venv installs it)")
    result = subprocess.run([uv, "lock", "--check"], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def dockerfile_build_steps(image: str) -> list[tuple[str, list[str]]]:
    """The build stage's steps in order: ("copy", sources) and ("sync", `uv sync` argv)."""
    out: list[tuple[str, list[str]]] = []
    for line in (REPO / "images" / image / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM ") and out:
            break  # the runtime stage
        if line.startswith("COPY ") and "--from" not in line:
            out.append(("copy", line.split()[1:-1]))
        if line.startswith("RUN uv sync"):
            out.append(("sync", shlex.split(line.removeprefix("RUN "))))
    return out


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_only_its_extra_from_the_lock(image):
    syncs = [argv for step, argv in dockerfile_build_steps(image) if step == "sync"]
    assert syncs, f"images/{image}/Dockerfile installs nothing with uv sync"
    for argv in syncs:
        assert "--locked" in argv, argv
        extras = [argv[i + 1] for i, a in enumerate(argv) if a == "--extra"]
        assert extras == [IMAGE_EXTRAS[image]], argv
    text = (REPO / "images" / image / "Dockerfile").read_text()
    assert "pip install ." not in text and "requirements" not in text


@pytest.mark.parametrize("image", IMAGES)
def test_each_images_install_steps_work_from_the_lock(image, tmp_path):
    """The build stage's COPY and `uv sync` lines replayed in a folder (no engine needed; uv's cache
    makes it seconds): the lock installs, the entry point imports, the operator has no ML stack."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed (make venv installs it)")
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never",
           "UV_LINK_MODE": "hardlink", "UV_PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    for step, args in dockerfile_build_steps(image):
        if step == "copy":
            for name in args:
                if (REPO / name).is_dir():
                    shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / name, src / name)
            continue
        result = subprocess.run([uv, *args[1:], "-q"], cwd=src, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{shlex.join(args)}: {result.stderr[-2000:]}"
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", IMAGE_PROBES[image]], capture_output=True, text=True,
                           timeout=300, env={"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1"})
    assert probe.returncode == 0, probe.stderr[-2000:]
    installed = subprocess.run([uv, "pip", "list", "--python", str(python), "--format", "freeze"],
                               capture_output=True, text=True, check=True, timeout=120).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    if image == "operator":
        assert not names & set(ML_STACK), names & set(ML_STACK)
    if image in ("operator", "predictor"):
        assert "torch" not in names
    packages = {p.name for p in venv.glob("lib/python*/site-packages/osmf_*")}
    assert ("osmf_jobs" in packages) == (image != "operator")
    assert ("osmf_operator" in packages) == (image == "operator")


# --- make images ----------------------------------------------------------------------------------

def fake_tool(bin_dir: Path, name: str, info_ok: bool, log: Path) -> None:
    """A stand-in for an OCI builder's CLI: `info` succeeds or fails as told, other calls are logged."""
    script = bin_dir / name
    script.write_text("#!/bin/sh\n"
                      f'if [ "$1" = info ]; then {"exit 0" if info_ok else "echo engine unreachable >&2; exit 125"}; fi\n'
                      f'echo "{name} $*" >> {log}\n')
    script.chmod(0o755)


def run_make_images(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "images"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": path})


def test_make_images_without_a_working_builder_says_why_and_fails(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake_tool(bin_dir, "docker", info_ok=False, log=log)
    result = run_make_images(f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode != 0
    assert "no OCI image builder works on this machine" in result.stderr
    assert "docker: installed, but `docker info` failed: engine unreachable" in result.stderr
    if not shutil.which("podman", path="/usr/bin:/bin"):
        assert "podman: not installed" in result.stderr
    assert not log.exists(), "nothing may be built"


def test_make_images_builds_the_three_names_with_the_first_builder_that_works(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake_tool(bin_dir, "docker", info_ok=False, log=log)
    fake_tool(bin_dir, "podman", info_ok=True, log=log)
    result = run_make_images(f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    app_version = CHART_META["appVersion"]
    assert calls == [f"podman build -f images/{image}/Dockerfile -t {published_images()[image]}:{app_version} ."
                     for image in IMAGES]


def builder_works_here() -> bool:
    probes = {"docker": ["docker", "info"], "podman": ["podman", "info"], "buildah": ["buildah", "info"]}
    for name, argv in probes.items():
        if shutil.which(name) and subprocess.run(argv, capture_output=True, timeout=60).returncode == 0:
            return True
    return False


@pytest.mark.skipif(builder_works_here(), reason="an OCI builder works here: make images would build for real")
def test_make_images_on_this_machine_fails_clearly():
    result = run_make_images(os.environ.get("PATH", ""))
    assert result.returncode != 0
    assert "no OCI image builder works on this machine" in result.stderr

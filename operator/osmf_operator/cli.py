"""`osmf`: the local runtime, offline rendering and validation, a resource's status and logs on a
cluster, CRD generation, and job tools.

Commands that need the ML stack (synth, grouping) run the job packages as subprocesses, so this
module stays importable with the operator's light dependencies only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from osmf_core.api import Kind
from osmf_core.layout import ArtifactRoot, Campaign, Dataset, World, join

DEFAULT_ARTIFACTS = "./osmf-artifacts"


def fail(message: str, code: int = 2) -> int:
    print(f"osmf: {message}", file=sys.stderr)
    return code


def run_job_tool(module: str, args: list[str]) -> int:
    """Run a job package's own CLI in a subprocess (keeps torch out of this process)."""
    if importlib.util.find_spec("osmf_jobs") is None:
        return fail("this command needs the job packages; install them with: pip install 'osmf[train]'")
    return subprocess.call([sys.executable, "-m", module, *args])


def load_resources(paths: list[str]):
    """(resources, error lines); warnings (e.g. a reference outside the files) are printed, not fatal."""
    from .validate import check_paths, has_errors

    resources, problems = check_paths(paths)
    if has_errors(problems):
        return resources, [str(p) for p in problems if p.severity == "error"]
    if not resources:
        return [], [f"{' '.join(paths)}: no resources found"]
    for warning in problems:
        print(warning, file=sys.stderr)
    return resources, []


def cmd_run(args: argparse.Namespace) -> int:
    resources, problems = load_resources(args.paths)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    return run_local(resources, args.artifacts, Console())[0]


def run_local(resources, artifacts: str, console: Console):
    from .local.runner import LocalRuntime

    runtime = LocalRuntime(artifacts, console=console)
    run = runtime.run(resources)
    console.print(runtime.summary_table(run))
    report = runtime.write_report(run)
    for resource in run.resources:
        output = resource.status.artifacts.output
        if resource.info.report_page and output is not None:
            console.print(f"{resource.kind}/{resource.name} report: {join(output.uri, resource.info.report_page)}")
    if report:
        console.print(f"Run report: {report}")
    return (0 if run.succeeded() else 1), run


def output_uri(run, kind: str) -> str | None:
    for resource in run.resources:
        if resource.kind == kind and resource.status.artifacts.output is not None:
            return resource.status.artifacts.output.uri
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from .local.demo import demo_resources

    console = Console()
    root = Path(args.artifacts).absolute()
    world = Path(args.world).absolute() if args.world else root / "demo-world"
    if not (world / Dataset.table_file(Dataset.USERS)).exists():
        console.print(f"[bold]Generating a synthetic ad world in {world}[/]")
        code = run_job_tool("osmf_jobs.synth", [str(world), *(["--tiny"] if args.tiny else [])])
        if code != 0:
            return fail(f"synthetic world generation failed (exit {code})", code)
    code, run = run_local(demo_resources(world.as_uri()), str(root), console)
    grouping, dataset, campaign = (output_uri(run, kind) for kind in (Kind.AUDIENCE_GROUPING, Kind.GAIP_DATASET, Kind.AD_IMAGE_CAMPAIGN))
    reward = next((r.status.artifacts.output.uri for r in run.resources if r.kind == Kind.GMLLM_TRAINING
                   and r.spec.task == "reward" and r.status.artifacts.output is not None), None)
    evaluation = root / ArtifactRoot.EVALUATION_DIR  # measured against the world's truth, which no stage reads
    if (world / World.TRUTH).exists() and grouping:
        console.print(f"[bold]The runs against the world's truth[/] ({evaluation})")
        runs = ["--grouping", grouping, *(["--dataset", dataset, "--campaign", campaign] if dataset and campaign else []),
                *(["--reward", reward] if reward and campaign else [])]
        code = code or run_job_tool("osmf_jobs.synth.evaluate", ["--world", str(world), *runs, "--out", str(evaluation)])
    if campaign:
        console.print(f"Campaign report: {join(campaign, Campaign.REPORT_HTML)}")
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import check_for_cluster, has_errors

    _, _, problems = check_for_cluster(args.paths, args.namespace, args.settings)
    for problem in problems:
        print(problem)
    if has_errors(problems):
        return 1
    print("all resources valid")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .render import render_paths

    return render_paths(args.paths, args.settings, args.artifacts, args.namespace)


def cmd_crds(args: argparse.Namespace) -> int:
    from . import crdgen

    out_dirs = [Path(args.out)] if args.out else [Path(d) for d in crdgen.DEFAULT_OUT_DIRS]
    if args.check:
        drift = [line for out in out_dirs for line in crdgen.check(out)]
        for line in drift:
            print(line)
        return 1 if drift else 0
    for out in out_dirs:
        for path in crdgen.generate(out):
            print(path)
    return 0


def cluster_client(args: argparse.Namespace):
    """(Kube, namespace) from the kubeconfig kubectl would use; -n overrides its context's namespace."""
    from .kube import Kube

    kube, namespace = Kube.from_kubeconfig(args.kubeconfig, args.context)
    return kube, args.namespace or namespace


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .kube import KubeError
    from .statusview import ViewError, describe, resolve

    try:
        info, name = resolve(args.target)
        kube, namespace = cluster_client(args)
        body = kube.get(info.kind, namespace, name)
        if body is None:
            return fail(f"{info.kind} {namespace}/{name} not found; kubectl get {info.plural} -n {namespace} lists them", 1)
        children = {}
        for child in ((body.get("status") or {}).get("children") or {}).get("objects") or []:
            if child["kind"] in ("Job", "InferenceService"):
                children[(child["kind"], child["name"])] = kube.get(child["kind"], namespace, child["name"])
    except (ViewError, KubeError) as error:
        return fail(str(error))
    print(describe(body, children, datetime.now(timezone.utc)))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from .builders.jobs import CONTAINER
    from .kube import KubeError
    from .statusview import ViewError, resolve, step_job

    try:
        info, name = resolve(args.target)
        kube, namespace = cluster_client(args)
        body = kube.get(info.kind, namespace, name)
        if body is None:
            return fail(f"{info.kind} {namespace}/{name} not found; kubectl get {info.plural} -n {namespace} lists them", 1)
        step, job = step_job(body, args.step)
        pods = sorted(kube.job_pods(namespace, job), key=lambda p: p["metadata"]["name"])
    except (ViewError, KubeError) as error:
        return fail(str(error))
    if not pods:
        return fail(f"job {job} (step {step}) has no pods (not started yet, or removed after ttlSecondsAfterFinished)", 1)
    prefix = len(pods) > 1  # shards and gangs: each line says which pod wrote it, as kubectl logs --prefix

    def show(pod: dict) -> str | None:
        pod_name, buffer = pod["metadata"]["name"], b""
        try:
            for chunk in kube.pod_log(namespace, pod_name, CONTAINER, follow=args.follow):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    print(f"[{pod_name}] " * prefix + line.decode(errors="replace"), flush=True)
            if buffer:
                print(f"[{pod_name}] " * prefix + buffer.decode(errors="replace"), flush=True)
        except KubeError as error:
            return f"{pod_name}: {error}"
        return None

    with ThreadPoolExecutor(max_workers=len(pods)) as pool:
        errors = [e for e in pool.map(show, pods) if e]
    for error in errors:
        print(f"osmf: logs of {error}", file=sys.stderr)
    return 1 if errors else 0


def cluster_target(command: argparse.ArgumentParser) -> None:
    command.add_argument("target", metavar="KIND/NAME", help="e.g. audiencegrouping/my-grouping or ag/my-grouping")
    command.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    command.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    command.add_argument("--context", help="kubeconfig context (default: the current one)")


def cluster_arguments(command: argparse.ArgumentParser) -> None:
    """What validate and render both read, so that they agree on every input."""
    command.add_argument("paths", nargs="+", metavar="FILE|DIR")
    command.add_argument("--settings", help="operator settings YAML (as in the Helm chart's settings); default: the operator's defaults")
    command.add_argument("--namespace", default="default", help="namespace of resources that name none (default: default)")


def cmd_health_checks(args: argparse.Namespace) -> int:
    from . import healthgen

    if args.check:
        drift = healthgen.check(args.out)
        for line in drift:
            print(line)
        return 1 if drift else 0
    for path in healthgen.generate(args.out):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="osmf", description="One Size, Many Fits: group-aware ad images, locally or on Kubernetes.")
    # The package version is the release: the chart's appVersion and the images' tag.
    top.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('osmf')}")
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="synthetic world → the whole pipeline on this machine → report")
    demo.add_argument("--artifacts", default=DEFAULT_ARTIFACTS, help="artifact root (default ./osmf-artifacts)")
    demo.add_argument("--world", help="use this synthetic world instead of generating one")
    demo.add_argument("--tiny", action="store_true", help="a tiny world (seconds, for smoke tests)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run resources from YAML on this machine (local runtime)")
    run.add_argument("paths", nargs="+", metavar="FILE|DIR")
    run.add_argument("--artifacts", default=DEFAULT_ARTIFACTS, help="artifact root URI or path (default ./osmf-artifacts)")
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="print the Kubernetes objects the operator would create, offline")
    cluster_arguments(render)
    render.add_argument("--artifacts", help="artifact root URI (overrides the settings)")
    render.set_defaults(func=cmd_render)

    validate = sub.add_parser("validate", help="check resources (and what depends on the operator settings); one line per problem")
    cluster_arguments(validate)
    validate.set_defaults(func=cmd_validate)

    status = sub.add_parser("status", help="a resource on the cluster: stage, progress, conditions, children")
    cluster_target(status)
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser("logs", help="logs of a resource's running (or --step) step's pods on the cluster")
    cluster_target(logs)
    logs.add_argument("--step", help="the step whose Job's pods to show (default: the running one, else the last)")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the pods end")
    logs.set_defaults(func=cmd_logs)

    crds = sub.add_parser("crds", help="generate the CRDs from the API models")
    crds.add_argument("--out", help="one output directory (default: crds/ and the chart's charts/osmf/files/crds/)")
    crds.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    crds.set_defaults(func=cmd_crds)

    health = sub.add_parser("health-checks", help="generate the chart's Argo CD health checks (Lua) from the kinds")
    health.add_argument("--out", default="charts/osmf/health", help="output directory (default: charts/osmf/health)")
    health.add_argument("--check", action="store_true", help="exit 1 when the files differ from the template")
    health.set_defaults(func=cmd_health_checks)

    # Listed for --help; their arguments are parsed by the job package's own CLI (see FORWARDED).
    sub.add_parser("synth", help="write a synthetic ad world (logs, catalog, truth): osmf synth OUT [--tiny]", add_help=False)
    sub.add_parser("grouping", help="osmf grouping assign|score … with a grouping artifact", add_help=False)
    return top


FORWARDED = {"synth": "osmf_jobs.synth", "grouping": "osmf_jobs.paag"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in FORWARDED:
        return run_job_tool(FORWARDED[argv[0]], argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())

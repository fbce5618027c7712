"""Group-aware generation against the truth, on both synthetic world families and several seeds
(issue 12): campaign lifts beside the baselines, the GRM against a separately trained group-blind GRM,
prompt collapse, and Group-DPO's effect with its oracle-reward ablation.

    python bench/generation.py [--worlds vocabulary painted] [--seeds 0 1 2] [--out DIR] [--tiny]

Per (world family, seed): `osmf synth --style-space <family> --seed <seed>`, then the embedded demo
pipeline (the same resources `osmf demo` runs) plus
- `demo-campaign-pretrained`: the campaign from the pre-trained policy (no Group-DPO adapter),
- `demo-grm-blind`: a group-blind GRM trained the same way (spec.reward.groupBlind),
- `demo-dpo-oracle` + `demo-campaign-oracle`: Group-DPO with the world's true click model as its
  reward (bench/oracle_dpo.py), everything else equal,
all through the local runtime, then `osmf_jobs.synth.lift` on the held-out products. Group-DPO's
effect is the post- vs pre-DPO campaign's true CTR on the same viewers (paired bootstrap, one-sided
p); so is the oracle's. Writes `<out>/<family>-seed<seed>.json` and `<out>/summary.json`, and prints
a table. Minutes per (family, seed) on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def extra_resources(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the demo plus the pre-DPO campaign and the group-blind GRM, the oracle's two resources)."""
    by_name = {d["metadata"]["name"]: d for d in docs}
    pretrained = copy.deepcopy(by_name["demo-campaign"])
    pretrained["metadata"]["name"] = "demo-campaign-pretrained"
    pretrained["spec"]["generatorRef"] = {"kind": "GMLLMTraining", "name": "demo-gmllm"}
    blind = copy.deepcopy(by_name["demo-grm"])
    blind["metadata"]["name"] = "demo-grm-blind"
    blind["spec"].setdefault("reward", {})["groupBlind"] = True
    oracle_dpo = copy.deepcopy(by_name["demo-dpo"])
    oracle_dpo["metadata"]["name"] = "demo-dpo-oracle"
    oracle_campaign = copy.deepcopy(by_name["demo-campaign"])
    oracle_campaign["metadata"]["name"] = "demo-campaign-oracle"
    oracle_campaign["spec"]["generatorRef"] = {"kind": "GroupDPORun", "name": "demo-dpo-oracle"}
    return [*docs, pretrained, blind], [oracle_dpo, oracle_campaign]


def run_pipeline(resources: list[dict], artifacts: Path, modules: dict[str, str] | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Run the resources on this machine; {name: output URI}. Raises when a resource failed."""
    from rich.console import Console

    from osmf_core.api import parse_resource
    from osmf_operator.local.executor import LocalExecutor
    from osmf_operator.local.runner import LocalRuntime

    workdir = artifacts / ".osmf-local"
    executor = LocalExecutor(workdir, env=env, modules=modules)
    runtime = LocalRuntime(str(artifacts), console=Console(quiet=True), workdir=workdir, executor=executor)
    run = runtime.run([parse_resource(doc) for doc in resources])
    failed = [f"{r.kind}/{r.name}: {next((c.message for c in r.status.conditions if c.type == 'Stalled'), '')}"
              for r in run.resources if r.status.artifacts.output is None]
    if failed:
        raise RuntimeError("; ".join(failed))
    return {r.name: r.status.artifacts.output.uri for r in run.resources}


def one_world(family: str, seed: int, out: Path, tiny: bool) -> dict:
    from osmf_jobs.synth.lift import Evaluator, compare_campaigns, summarize
    from osmf_operator.local.demo import demo_documents

    world = out / f"{family}-seed{seed}" / "world"
    artifacts = out / f"{family}-seed{seed}" / "artifacts"
    started = time.monotonic()
    if not (world / "users.parquet").exists():
        subprocess.run([sys.executable, "-m", "osmf_jobs.synth", str(world), "--style-space", family, "--seed", str(seed),
                        *(["--tiny"] if tiny else [])], check=True, cwd=ROOT, capture_output=True)
    resources, oracle = extra_resources(demo_documents(world.as_uri()))
    runs = run_pipeline(resources, artifacts)
    runs |= run_pipeline([*resources, *oracle], artifacts, modules={"GroupDPORun": "bench.oracle_dpo"},
                         env={"OSMF_ORACLE_WORLD": str(world)})
    evaluator = Evaluator(str(world), runs["demo-grouping"], runs["demo-gaip"])
    post = evaluator.outcomes(runs["demo-campaign"])
    result = summarize(post)
    result["dpo_effect"] = compare_campaigns(post, pre := evaluator.outcomes(runs["demo-campaign-pretrained"]))
    result["oracle_dpo_effect"] = compare_campaigns(evaluator.outcomes(runs["demo-campaign-oracle"]), pre)
    result["reward_pairs"] = evaluator.reward_pairs()
    metrics = {name: json.loads(Path(uri.removeprefix("file://"), "metrics.json").read_text()) for name, uri in runs.items()
               if name in ("demo-grm", "demo-grm-blind", "demo-dpo", "demo-dpo-oracle", "demo-gmllm")}
    result["grm"] = {"pairwise_accuracy": metrics["demo-grm"]["pairwise_accuracy"],
                     "preference_model_pairwise_accuracy": metrics["demo-grm"].get("preference_model_pairwise_accuracy"),
                     "group_blind_grm_pairwise_accuracy": metrics["demo-grm-blind"]["pairwise_accuracy"]}
    result["dpo"] = {name: {k: metrics[name].get(k) for k in ("reward", "win_rate_decided", "heldout_wins", "heldout_losses", "kl_to_reference")}
                     for name in ("demo-dpo", "demo-dpo-oracle")}
    result["style_match"] = metrics["demo-gmllm"].get("style_match")
    result["family"], result["seed"], result["seconds"] = family, seed, round(time.monotonic() - started, 1)
    return result


def row(r: dict) -> str:
    lift = r["lift_vs_onesize"]
    pct = lambda m: f"{100 * lift[m]['value']:+.1f}% [{100 * lift[m]['ci95'][0]:+.1f}, {100 * lift[m]['ci95'][1]:+.1f}]"  # noqa: E731
    dpo, oracle = r["dpo_effect"]["generated_only"], r["oracle_dpo_effect"]["generated_only"]
    return (f"{r['family']:>10} {r['seed']:>4} | combined {pct('campaign')} | generated {pct('generated_only')} | retrieval {pct('retrieval')} "
            f"| logged oracle {pct('logged_oracle')} | share of oracle lift {r['share_of_logged_oracle_lift']['campaign']['value']:.2f} "
            f"| GRM {r['grm']['pairwise_accuracy']:.3f} vs blind {r['grm']['group_blind_grm_pairwise_accuracy']:.3f} (ceiling {r['reward_pairs']['ceiling_ties_allow']:.3f}) "
            f"| collapse {r['collapse']['share_with_different_prompts']:.2f} "
            f"| DPO {100 * dpo['relative_difference']:+.2f}% p={dpo['p_not_better']:.4f} | oracle DPO {100 * oracle['relative_difference']:+.2f}% p={oracle['p_not_better']:.4f} "
            f"| {r['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=["vocabulary", "painted"], choices=["vocabulary", "painted"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="bench-generation", help="working folder (kept: worlds, artifacts, results)")
    parser.add_argument("--tiny", action="store_true", help="tiny worlds (a smoke run of the harness, not the benchmark)")
    args = parser.parse_args(argv)
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for family in args.worlds:
        for seed in args.seeds:
            result = one_world(family, seed, out, args.tiny)
            (out / f"{family}-seed{seed}.json").write_text(json.dumps(result, indent=2))
            results.append(result)
            print(row(result), flush=True)
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print("\n".join(row(r) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

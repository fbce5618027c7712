"""The local run's report.html and summary.json (issue 14, point 9).

A run's results are laid out as a real run leaves them (stage statuses, each stage's artifact
directory with Group-DPO's eval/rounds.json and the campaign's gallery, the truth evaluation's
campaign-lift.json), plus the training losses the runtime sampled; the report must show per stage its
metrics and charts, the lift chart with intervals, links that resolve, and a failed stage's message.
The browser test opens it in Debian's headless chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from rich.console import Console
from tests.factories import body, reward_body

from osmf_core.api import parse_resource
from osmf_core.layout import ArtifactRoot, Campaign, GroupDPO
from osmf_operator.local.report import bar_chart, line_chart, lift_bars
from osmf_operator.local.runner import LocalRun, LocalRuntime

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars")
FAILURE = "job gmllm-train-1a2b3c4d (step train) failed: osmf: invalid input: table 'users': column 'age_band' missing"
ROUNDS = [{"round": r, "pairs": 180, "reward_margin": m, "grm_mean_score": s, "dpo_loss_first": 0.69 - 0.05 * r,
           "dpo_loss_last": 0.6 - 0.08 * r, "implicit_accuracy_last": 0.75} for r, m, s in ((1, 0.99, -2.65), (2, 0.73, -2.58), (3, 0.83, -2.55))]
LIFT = {"products": 48, "users": 95763,
        "ctr": {"campaign": 0.0744, "generated_only": 0.07, "onesize": 0.0492, "retrieval": 0.056, "logged_oracle": 0.066, "style_oracle": 0.08},
        "lift_vs_onesize": {"campaign": {"value": 0.55, "ci95": [0.50, 0.60]}, "generated_only": {"value": 0.41, "ci95": [0.35, 0.47]},
                            "retrieval": {"value": 0.14, "ci95": [0.11, 0.17]}, "logged_oracle": {"value": 0.36, "ci95": [0.33, 0.39]},
                            "style_oracle": {"value": 0.63, "ci95": [0.60, 0.66]}, "broken": "n/a"}}


def condition(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"}


def finished(doc: dict, root: Path, metrics: dict) -> tuple:
    """A resource as a successful run leaves it, with its artifact directory."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    directory = root / "default" / kind.lower() / name / "0123456789abcdef"
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    doc["status"] = {"observedGeneration": 1, "stage": "Succeeded", "metrics": metrics,
                     "conditions": [condition("Ready", "True", "Succeeded", "all steps completed"), condition("Succeeded", "True", "Succeeded"),
                                    condition("Stalled", "False", "NotStalled")],
                     "artifacts": {"output": {"name": "output", "kind": kind, "uri": directory.as_uri(), "digest": "sha256:0"}}}
    return parse_resource(doc), directory


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "artifacts"
    grouping, _ = finished(body("AudienceGrouping"), root, {"auroc": 0.6627, "mean_silhouette": 0.77, "groups": 172, "users": 6000})
    gmllm, _ = finished(body("GMLLMTraining"), root, {"eval_loss": 0.72, "eval_loss_prefer": 0.35, "eval_loss_product": 1.27,
                                                      "eval_loss_prompt": 0.82, "style_match": 0.33, "final_train_loss": 0.15})
    grm = parse_resource({**reward_body(), "status": {"observedGeneration": 1, "stage": "Failed", "conditions": [
        condition("Ready", "False", "InvalidInput", FAILURE), condition("Succeeded", "False", "InvalidInput", FAILURE),
        condition("Stalled", "True", "InvalidInput", FAILURE)]}})
    dpo, dpo_dir = finished(body("GroupDPORun"), root, {"win_rate_vs_initial": 0.517, "mean_score_gain": 0.12})
    (dpo_dir / "eval").mkdir()
    (dpo_dir / GroupDPO.EVAL_ROUNDS).write_text(json.dumps(ROUNDS))
    campaign, campaign_dir = finished(body("AdImageCampaign"), root, {"images": 96})
    (campaign_dir / Campaign.REPORT_HTML).write_text("<!doctype html><title>gallery</title><p>gallery")
    (root / ArtifactRoot.EVALUATION_DIR).mkdir()
    (root / ArtifactRoot.EVALUATION_DIR / ArtifactRoot.CAMPAIGN_LIFT).write_text(json.dumps(LIFT))
    (root / ArtifactRoot.EVALUATION_DIR / ArtifactRoot.GROUPING_EVALUATION).write_text(json.dumps({"ari_median": 1.0, "ari_mean": 0.997}))
    runtime = LocalRuntime(str(root), console=Console(file=open(os.devnull, "w")), workdir=tmp_path / "work")
    run = LocalRun(resources=[grouping, gmllm, grm, dpo, campaign], artifact_root=runtime.artifact_root)
    run.curves[gmllm.key] = {"train": [(10.0, 2.1), (120.0, 1.2), (240.0, 0.6), (360.0, 0.3), (630.0, 0.15)]}
    path = runtime.write_report(run)
    return path, json.loads((root / ArtifactRoot.SUMMARY).read_text())


def test_summary_carries_each_stages_condition_messages(report):
    _, summary = report
    grm = next(s for s in summary if s["name"] == "grm")
    assert grm["conditions"]["Stalled"] == "True"  # the shape earlier readers use is kept
    assert grm["conditionDetails"]["Stalled"] == {"status": "True", "reason": "InvalidInput", "message": FAILURE}
    assert next(s for s in summary if s["name"] == "grouping")["conditionDetails"]["Ready"]["message"] == "all steps completed"


def test_the_report_shows_curves_quality_lift_links_and_the_failure(report):
    path, _ = report
    page = path.read_text()
    text = html.unescape(page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert FAILURE in text and 'class="stage failed"' in page
    assert "1 failed" in text and "4 of 5 stages succeeded" in text
    for title in ("train: training loss", "Group-DPO: DPO loss per round", "Group-DPO: GRM reward margin of the pairs per round",
                  "Held-out loss per task", "Expected CTR lift over one-size, 95% CI"):
        assert f'aria-label="{title}' in text, title
    assert "Grouping quality" in text and "mean_silhouette" in text and "ari_median" in text
    # the lift chart: every method with its interval, the malformed entry left out
    assert "campaign: +55.0% (95% CI +50.0% to +60.0%)" in text and "style oracle: +63.0%" in text and "broken" not in text
    hrefs = re.findall(r'href="([^"#][^"]*)"', page)
    assert "default/adimagecampaign/campaign/0123456789abcdef/report.html" in hrefs
    assert "evaluation/campaign-lift.json" in hrefs
    assert sum(h.startswith("default/") and h.endswith("/") for h in hrefs) == 4  # every stage that has an artifact
    for href in hrefs:
        assert (path.parent / unquote(href)).exists(), href


def test_charts_and_lift_are_read_defensively():
    assert line_chart("empty", {"loss": []}, "x", "y") == "" and bar_chart("empty", [], "v") == ""
    assert line_chart("nan", {"loss": [(1, float("nan"))]}, "x", "y") == ""
    assert lift_bars({"lift_vs_onesize": "oops"}) == [] and lift_bars([]) == []
    assert lift_bars({"lift_vs_onesize": {"campaign": {"value": 0.1, "ci95": [0.0]}, "retrieval": 0.05}}) == [
        ("campaign", 0.1, None), ("retrieval", 0.05, None)]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_the_report_renders_in_headless_chromium_with_charts_links_and_no_console_errors(report, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); the report was not opened in a browser")
    path, _ = report
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    # The page as it is: chromium logs console messages (failed loads included) to stderr.
    plain = subprocess.run([binary, *flags, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                           capture_output=True, text=True, timeout=120)
    assert "<svg" in plain.stdout, f"chromium printed no DOM (exit {plain.returncode}): {plain.stderr[-2000:]}"
    console = [line for line in plain.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    # A copy with a probe: rendered size of every chart, and every link as the browser resolved it.
    probe = path.with_name("probe.html")
    probe.write_text(path.read_text().replace("</body>", (
        "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-osmf-probe',JSON.stringify({"
        "charts:[...document.querySelectorAll('svg.chart')].map(s=>{const r=s.getBoundingClientRect();"
        "return [s.getAttribute('aria-label'),r.width,r.height,s.querySelectorAll('polyline,rect.bar').length]}),"
        "links:[...document.links].map(a=>a.href)}))});</script></body>")))
    dumped = subprocess.run([binary, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r'data-osmf-probe="([^"]*)"', dumped.stdout)
    assert match, f"no probe result (exit {dumped.returncode}): {dumped.stderr[-2000:]}"
    probed = json.loads(html.unescape(match.group(1)))
    charts = {label: (width, height, marks) for label, width, height, marks in probed["charts"]}
    assert len(charts) >= 6, charts
    assert all(width > 100 and height > 100 and marks > 0 for width, height, marks in charts.values()), charts
    files = [unquote(h.removeprefix("file://").split("#")[0]) for h in probed["links"] if h.startswith("file://")]
    assert any(f.endswith("/report.html") and "adimagecampaign" in f for f in files)
    assert all(Path(f).exists() for f in files), files
    probe.unlink()

"""`osmf demo` through the real CLI on the tiny world: every stage's real job, the truth evaluation,
the reports. (The default world is what `bench/demo.py` times; here the tiny one keeps it short.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_demo_runs_every_stage_and_writes_reports_and_truth_metrics(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(REPO / "jobs"), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "demo", "--tiny", "--artifacts", str(artifacts)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    summary = json.loads((artifacts / "summary.json").read_text())
    assert [row["stage"] for row in summary] == ["Succeeded"] * 6
    assert (artifacts / "report.html").is_file()
    campaign_report = next(artifacts.glob("default/adimagecampaign/demo-campaign/*/report.html"))
    assert f"{campaign_report.parent.as_uri()}/report.html" in done.stdout.replace("\n", "")

    grouping = json.loads((artifacts / "evaluation" / "grouping.json").read_text())
    assert 0.5 < grouping["auroc"] <= grouping["oracle_auroc"] + 0.02
    assert -1.0 <= grouping["median_ari"] <= 1.0 and grouping["products"] == 8
    assert {"ndcg_ours", "ndcg_one_size", "ndcg_attribute_only"} <= set(grouping)
    lift = json.loads((artifacts / "evaluation" / "campaign-lift.json").read_text())
    assert lift["products"] == 8 and lift["oracle_lift"] > 0
    assert set(lift["ctr"]) >= {"campaign", "onesize", "oracle"}

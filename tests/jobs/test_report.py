"""The campaign's report.html: self-contained, complete, and every image loads in a real headless chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.jobs.test_campaign_world import AGE_BANDS, shared_campaign_run

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    run = shared_campaign_run(tmp_path_factory)
    return run / "report.html", json.loads((run / "campaign.json").read_text())


def test_report_is_self_contained(report):
    path, _ = report
    page = path.read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower()
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert references and all(ref.startswith("data:image/") or ref.startswith("#") for ref in references)
    assert not re.search(r"url\(\s*['\"]?(?!data:)[a-z]+:", page, flags=re.I)


def test_report_shows_groups_attributes_prompts_scores_and_the_pipeline(report):
    path, campaign = report
    page = html.unescape(path.read_text())
    # one cut-out, one image per group and one one-size image per product
    assert page.count("<img") == sum(len(p["groups"]) + 2 for p in campaign["products"])
    for product in campaign["products"]:
        for group in product["groups"]:
            assert f"group {group['group_id']}</b> · {group['size']} users" in page
            if group["source"] == "generated":
                assert f"generated</span> <span class=prompt>“{group['prompt']}”" in page
            else:
                assert f"logged</span> creative {group['image_id']}" in page
            assert f"{campaign['selection']['used']} {group['score']:.4g}" in page
    assert f"scorer {campaign['selection']['used']} (requested auto;" in page
    # p01 has three groups, one per age band: each band defines its group; region never does
    section = page[page.index('id="p-p01"'):page.index('id="p-p02"')]
    for g, band in enumerate(AGE_BANDS):
        block = section[section.index(f"group {g}</b>"):]
        assert block[: block.index("</figcaption>")].count(f"age_band {band} 100%") == 1
    assert "region" not in section.split("Products")[0]
    assert "never-read" not in page and "secret" not in page  # only the grouping's allow-list is read
    for stage in ("AudienceGrouping/grouping", "GAIPDataset/gaip", "GMLLMTraining/gmllm", "GMLLMTraining/grm", "GroupDPORun/dpo",
                  "AdImageCampaign/campaign"):
        assert stage in page
    assert "auroc" in page and "win_rate" in page and "mean_score_gain" in page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_every_image_loads_in_headless_chromium(report, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); the report was not opened in a browser")
    path, campaign = report
    # A copy with a probe script: after load, it writes each image's state into an attribute the DOM dump shows.
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text().replace("</body>", (
        "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-osmf-images',"
        "JSON.stringify([...document.images].map(i=>[i.alt,i.complete,i.naturalWidth,i.naturalHeight])))});</script></body>")))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dumped = subprocess.run([binary, *flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r'data-osmf-images="([^"]*)"', dumped.stdout)
    assert match, f"chromium printed no probed DOM (exit {dumped.returncode}): {dumped.stderr[-2000:]}"
    images = json.loads(html.unescape(match.group(1)))
    assert len(images) == sum(len(p["groups"]) + 2 for p in campaign["products"])
    broken = [alt for alt, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert not broken, f"images that did not load: {broken}"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "campaign-report.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run([binary, *flags, "--window-size=1280,1800", f"--screenshot={shot}", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"

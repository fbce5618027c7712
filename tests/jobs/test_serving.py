"""The KServe predictor in-process through kserve's own HTTP app (v1 and v2), on a real campaign run:
the group the grouping's assigner picks and that group's image, unknown products, missing groups,
where the campaign is found, the entry point on loopback, and nothing outside the `serve` extra on the path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.jobs.test_campaign_world import AGE_BANDS, REGIONS, shared_campaign_run, shared_campaign_world

REPO = Path(__file__).resolve().parents[2]
USERS = [{"age_band": a, "region": r} for a in AGE_BANDS for r in REGIONS] + [{"age_band": "99+"}, {}]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_campaign_world(tmp_path_factory)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_campaign_run(tmp_path_factory)


@pytest.fixture(scope="module")
def assigner(world):
    from osmf_jobs.paag.assign import Assigner

    return Assigner.load(world.uri("grouping"))


@pytest.fixture(scope="module")
def partial_run(run, assigner, tmp_path_factory) -> tuple[Path, str, int]:
    """A copy of the campaign without the image of the group the first user of p01 falls in."""
    out = tmp_path_factory.mktemp("partial-campaign")
    doc = json.loads((run / "campaign.json").read_text())
    dropped = assigner.assign("p01", USERS[0])
    for product in doc["products"]:
        if product["product_id"] == "p01":
            product["groups"] = [g for g in product["groups"] if g["group_id"] != dropped]
    (out / "campaign.json").write_text(json.dumps(doc))
    return out, "p01", dropped


@pytest.fixture(scope="module")
def client(run, partial_run, world):
    """kserve's FastAPI app with two predictors registered, driven in-process."""
    from fastapi.testclient import TestClient
    from kserve import ModelServer
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    from osmf_jobs.serving.predictor import GroupImagePredictor

    server = ModelServer(enable_grpc=False)
    for model in (GroupImagePredictor("campaign", campaign_uri=run.as_uri()),
                  GroupImagePredictor("partial", campaign_uri=partial_run[0].as_uri(), grouping_uri=world.uri("grouping"))):
        model.load()
        server.register_model(model)
    rest = RESTServer("kserve.model_server:app", server.dataplane, server.model_repository_extension, http_port=0)
    rest.create_application()  # registers kserve's routes and error handlers on its app, as ModelServer.start does
    with TestClient(app) as test_client:
        yield test_client


def campaign_images(run: Path) -> dict[str, dict]:
    doc = json.loads((run / "campaign.json").read_text())
    return {p["product_id"]: {"groups": {g["group_id"]: g["image_uri"] for g in p["groups"]}, "onesize": p["onesize"]["image_uri"]}
            for p in doc["products"]}


def test_v1_returns_the_assigned_groups_image(client, run, assigner, world):
    images = campaign_images(run)
    instances = [{"product_id": p, "user": u} for p in world.products for u in USERS]
    response = client.post("/v1/models/campaign:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(instances)
    seen = set()
    for instance, prediction in zip(instances, predictions):
        group = assigner.assign(instance["product_id"], instance["user"])
        assert prediction == {"group_id": group, "image_uri": images[instance["product_id"]]["groups"][group], "fallback": False}
        seen.add((instance["product_id"], group))
    assert len(seen) >= 4  # the users spread over several groups


def test_v2_returns_the_same_as_v1(client, run, assigner, world):
    users = USERS[:6]
    products = [p for p in world.products for _ in users]
    body = {"id": "req-1", "inputs": [
        {"name": "product_id", "datatype": "BYTES", "shape": [len(products)], "data": products},
        {"name": "age_band", "datatype": "BYTES", "shape": [len(products)], "data": [u["age_band"] for _ in world.products for u in users]},
        {"name": "region", "datatype": "BYTES", "shape": [len(products)], "data": [u["region"] for _ in world.products for u in users]},
    ]}
    response = client.post("/v2/models/campaign/infer", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model_name"] == "campaign" and doc["id"] == "req-1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["group_id"]["datatype"] == "INT64" and outputs["image_uri"]["datatype"] == "BYTES"
    assert all(o["shape"] == [len(products)] for o in outputs.values())
    images = campaign_images(run)
    want = [assigner.assign(p, u) for p in world.products for u in users]
    assert outputs["group_id"]["data"] == want
    assert outputs["image_uri"]["data"] == [images[p]["groups"][g] for p, g in zip(products, want)]
    assert outputs["fallback"]["data"] == [False] * len(products)


def test_unknown_product_is_a_clear_400(client):
    response = client.post("/v1/models/campaign:predict", json={"instances": [{"product_id": "nope", "user": {}}]})
    assert response.status_code == 400 and "'nope' is not in campaign" in response.json()["error"]
    body = {"inputs": [{"name": "product_id", "datatype": "BYTES", "shape": [1], "data": ["nope"]}]}
    response = client.post("/v2/models/campaign/infer", json=body)
    assert response.status_code == 400 and "'nope' is not in campaign" in response.json()["error"]


@pytest.mark.parametrize("body, needle", [
    ({"instances": []}, "expected"),
    ({"instances": [{"user": {}}]}, "instances[0]: needs a string product_id"),
    ({"instances": [{"product_id": "p00", "user": "old"}]}, "instances[0].user"),
])
def test_malformed_v1_requests_are_400(client, body, needle):
    response = client.post("/v1/models/campaign:predict", json=body)
    assert response.status_code == 400 and needle in response.json()["error"]


def test_malformed_v2_requests_are_400(client):
    body = {"inputs": [{"name": "age_band", "datatype": "BYTES", "shape": [1], "data": ["18-24"]}]}
    response = client.post("/v2/models/campaign/infer", json=body)
    assert response.status_code == 400 and "'product_id' is required" in response.json()["error"]
    body = {"inputs": [{"name": "product_id", "datatype": "BYTES", "shape": [2], "data": ["p00", "p01"]},
                       {"name": "age_band", "datatype": "BYTES", "shape": [1], "data": ["18-24"]}]}
    response = client.post("/v2/models/campaign/infer", json=body)
    assert response.status_code == 400 and "different length" in response.json()["error"]


def test_missing_group_gets_the_onesize_image(client, partial_run, assigner):
    _, product, dropped = partial_run
    images = campaign_images(partial_run[0])
    response = client.post("/v1/models/partial:predict", json={"instances": [{"product_id": product, "user": u} for u in USERS]})
    assert response.status_code == 200, response.text
    fallbacks = 0
    for user, prediction in zip(USERS, response.json()["predictions"]):
        group = assigner.assign(product, user)
        if group == dropped:
            assert prediction == {"group_id": group, "image_uri": images[product]["onesize"], "fallback": True}
            fallbacks += 1
        else:
            assert prediction == {"group_id": group, "image_uri": images[product]["groups"][group], "fallback": False}
    assert fallbacks >= 1


def test_models_report_ready(client):
    assert client.get("/v1/models/campaign").json() == {"name": "campaign", "ready": True}
    assert client.get("/v2/models/partial/ready").status_code == 200


def test_campaign_location_order(run, tmp_path):
    from osmf_jobs.serving.catalog import CampaignNotFound, campaign_store

    mounted = tmp_path / "models"
    mounted.mkdir()
    assert campaign_store(run.as_uri(), None, mounted).uri == run.as_uri()  # explicit first
    assert campaign_store(None, run.as_uri(), mounted).uri == run.as_uri()  # STORAGE_URI when nothing is mounted
    shutil.copy(run / "campaign.json", mounted / "campaign.json")
    assert campaign_store(None, "s3://elsewhere/run", mounted).uri == mounted.as_uri()  # the storage initializer's copy
    with pytest.raises(CampaignNotFound, match="STORAGE_URI is unset"):
        campaign_store(None, None, tmp_path / "empty")


def test_image_base_url_rewrites_uris(run):
    from osmf_jobs.serving.catalog import CampaignImages

    doc = json.loads((run / "campaign.json").read_text())
    images = CampaignImages.from_manifest(doc, base_url="https://cdn.example.com/c1/")
    assert images.image("p00", 0) == (f"https://cdn.example.com/c1/{doc['products'][0]['groups'][0]['image']}", False)
    assert images.image("p00", 7) == (f"https://cdn.example.com/c1/{doc['products'][0]['onesize']['image']}", True)


# Installed in the trainer image but not by the `serve` extra: the predictor must never import them.
NOT_IN_SERVE_EXTRA = ("torch", "transformers", "diffusers", "peft", "trl", "accelerate", "sentence_transformers", "sklearn",
                      "scipy", "cv2", "PIL", "kopf")


def test_serving_path_needs_only_the_serve_extra(run):
    script = f"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {NOT_IN_SERVE_EXTRA!r}:
            raise ImportError("the predictor image has no " + name)
sys.meta_path.insert(0, Blocker())
import osmf_jobs.serving.server
from osmf_jobs.serving.predictor import GroupImagePredictor
model = GroupImagePredictor("campaign", campaign_uri={run.as_uri()!r})
model.load()
out = model.predict({{"instances": [{{"product_id": "p00", "user": {{"age_band": "18-24"}}}}]}})
assert out["predictions"][0]["image_uri"].endswith(".png"), out
print("served", flush=True)
import os
os._exit(0)  # what is tested is above; interpreter teardown with native thread pools aborted once (-6)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "served", done.stderr[-2000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_entry_point_serves_on_loopback(run, tmp_path):
    import httpx

    port = free_port()
    env = {**os.environ, "STORAGE_URI": run.as_uri(), "OSMF_MODEL_NAME": "demo-campaign", "PROTOCOL": "v1"}
    env.pop("OSMF_GROUPING_URI", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "osmf_jobs.serving", f"--http_port={port}"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/v1/models/demo-campaign", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail("the predictor did not become ready: " + (tmp_path / "server.log").read_text()[-3000:])
        response = httpx.post(f"{url}/v1/models/demo-campaign:predict", json={"instances": [{"product_id": "p02", "user": {}}]}, timeout=5)
        assert response.status_code == 200 and response.json()["predictions"][0]["group_id"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_precomputed_groups_match_the_assigner_and_the_lazy_path(run, assigner, world, monkeypatch):
    from osmf_jobs.serving import predictor as P

    model = P.GroupImagePredictor("campaign", campaign_uri=run.as_uri())
    model.load()
    assert len(model.groups) == len(world.products) * (len(AGE_BANDS) + 1) * (len(REGIONS) + 1)
    for (product, key), group in model.groups.items():
        user = {a: (assigner.config["vocab"][a][i - 1] if i else None) for a, i in zip(assigner.attributes, key)}
        assert assigner.assign(product, {a: v for a, v in user.items() if v is not None}) == group
    monkeypatch.setattr(P, "PRECOMPUTE_LIMIT", 0)
    lazy = P.GroupImagePredictor("campaign", campaign_uri=run.as_uri())
    lazy.load()
    assert lazy.groups == {}
    for product in world.products:
        for user in USERS:
            assert lazy.assign(product, user) == model.assign(product, user)


@pytest.mark.slow
def test_serving_benchmark_runs(tmp_path):
    """bench/serving.py end to end at a toy size (its numbers are for the benchmark run, not checked here)."""
    done = subprocess.run([sys.executable, "bench/serving.py", "--requests", "30", "--products", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["bench"] == "serving" and set(summary["http_ms"]) == {"campaign", "naive"}

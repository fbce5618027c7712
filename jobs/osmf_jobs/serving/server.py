"""The predictor's process: kserve's flags plus OSMF's, and the ModelServer they configure.

Per-request log lines are off by default — kserve's latency line (`--enable_latency_logging`, default
false here) and uvicorn's access log (kept when `--log_config_file` supplies a logging config): at
auction rates they cost the server more CPU than the answer (measured by bench/serving.py). Requests
are still counted and timed by kserve's Prometheus histograms on `/metrics`.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser

    out = argparse.ArgumentParser(parents=[kserve_parser], description="OSMF group-image predictor (KServe).")
    out.set_defaults(enable_latency_logging=False)
    out.add_argument("--campaign_uri", default=None, help="the AdImageCampaign run (default: /mnt/models, else STORAGE_URI)")
    out.add_argument("--grouping_uri", default=os.environ.get("OSMF_GROUPING_URI"),
                     help="the AudienceGrouping run (default: OSMF_GROUPING_URI, else the one campaign.json names)")
    out.add_argument("--image_base_url", default=os.environ.get("OSMF_IMAGE_BASE_URL"), help="serve <base>/<path> instead of artifact URIs")
    return out


def model_name(args: argparse.Namespace) -> str:
    """--model_name when given, else OSMF_MODEL_NAME (the operator sets it), else 'campaign'."""
    return args.model_name if args.model_name and args.model_name != "model" else os.environ.get("OSMF_MODEL_NAME", "campaign")


def start(models: list[Any], args: argparse.Namespace) -> None:
    """Serve `models` (loaded) over HTTP until SIGTERM; gRPC off."""
    from kserve import ModelServer

    server = ModelServer(http_port=args.http_port, enable_grpc=False, enable_latency_logging=args.enable_latency_logging)
    if args.log_config_file is None:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server.start(models)

"""`python -m osmf_jobs.serving [--campaign_uri URI] [--grouping_uri URI] [kserve's flags]`"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    from kserve import ModelServer
    from kserve.model_server import parser as kserve_parser

    from osmf_jobs.serving.predictor import GroupImagePredictor

    parser = argparse.ArgumentParser(parents=[kserve_parser], description="OSMF group-image predictor (KServe).")
    parser.add_argument("--campaign_uri", default=None, help="the AdImageCampaign run (default: /mnt/models, else STORAGE_URI)")
    parser.add_argument("--grouping_uri", default=os.environ.get("OSMF_GROUPING_URI"), help="the AudienceGrouping run (default: OSMF_GROUPING_URI, else the campaign's)")
    parser.add_argument("--image_base_url", default=os.environ.get("OSMF_IMAGE_BASE_URL"), help="serve <base>/<path> instead of artifact URIs")
    args, _ = parser.parse_known_args()
    name = args.model_name if args.model_name and args.model_name != "model" else os.environ.get("OSMF_MODEL_NAME", "campaign")
    model = GroupImagePredictor(name, campaign_uri=args.campaign_uri, grouping_uri=args.grouping_uri,
                                storage_uri=os.environ.get("STORAGE_URI"), image_base_url=args.image_base_url)
    model.load()
    ModelServer(enable_grpc=False).start([model])


if __name__ == "__main__":
    main()

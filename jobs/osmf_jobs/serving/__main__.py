"""`python -m osmf_jobs.serving [--campaign_uri URI] [--grouping_uri URI] [kserve's flags]`"""

from __future__ import annotations

import os


def main() -> None:
    from osmf_jobs.serving.predictor import GroupImagePredictor
    from osmf_jobs.serving.server import model_name, parser, start

    args, _ = parser().parse_known_args()
    model = GroupImagePredictor(model_name(args), campaign_uri=args.campaign_uri, grouping_uri=args.grouping_uri,
                                storage_uri=os.environ.get("STORAGE_URI"), image_base_url=args.image_base_url)
    model.load()
    start([model], args)


if __name__ == "__main__":
    main()

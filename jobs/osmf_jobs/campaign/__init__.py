"""The AdImageCampaign job: one image per (product, audience group), the one-size fallback, a gallery.

    python -m osmf_jobs.campaign --config /etc/osmf/config.json      # step generate [shards] | merge

Inputs (docs/contracts.md): `grouping` (groups.parquet, assignments.parquet), `data` (the logs root:
products table with `image_uri` cut-outs, users table), `generator` (a GroupDPORun run = LoRA adapter,
or a pretrain GMLLMTraining run), `policy` (the GroupDPORun's base pretrain run), `reward` (optional
GRM run).

Outputs in the run directory (DESIGN §5):
- `images/<product_id>/<group_id>/<n>.png` — every rendered candidate n of a group;
- `images/<product_id>/onesize.png` — the product's one-size-fits-all image (the serving fallback);
- `campaign.json` — `products[]`: `product_id`, `title`, `cutout_uri`, `groups[]` (`group_id`, `size`,
  `prompt`, `n`, `image` (run-relative), `image_uri` (absolute), `score`, `onesize_score`,
  `candidates[]`), `onesize` (`prompt`, `image`, `image_uri`, `source`, `score`); plus the inputs;
- `serving/campaign.json` — the same document alone in a folder: the InferenceService's STORAGE_URI,
  so KServe's storage initializer copies one small file (the predictor reads images by URI);
- `report.html` — the self-contained gallery (`report.build_report`);
- `manifest.json` — metrics `products`, `groups`, `images`, `candidates` and, with a GRM,
  `mean_grm_score`, `onesize_mean_grm_score`, `mean_score_gain`, `win_rate_vs_onesize`.

How candidates and the one-size image are chosen: see `generate`. Expected CTR on synthetic worlds,
against their truth: `python -m osmf_jobs.synth.evaluate` (see `osmf_jobs.synth.lift`).
"""

"""The GAIPDataset job: `python -m osmf_jobs.gaip --config FILE`.

Steps (docs/contracts.md): `aggregate` [shards] -> `merge`. Inputs: `grouping` (assignments.parquet,
groups.parquet), `data` (the logs root). Outputs in the run directory (DESIGN §5):
- `samples.parquet`: product_id, title, image_id, image_uri (absolute), group_id, group_embedding
  (the group's centroid), impressions, clicks, ctr, caption, split — one row per (product, group,
  image) with at least spec.minImpressions impressions;
- `pairs.parquet`: product_id, group_id, chosen_image_id, rejected_image_id, chosen_ctr,
  rejected_ctr, chosen_impressions, rejected_impressions, ctr_ratio, split — images of the same
  product and group whose CTR ratio lies in [pairs.minCtrRatio, pairs.maxCtrRatio];
- `groups.parquet` (a copy of the grouping's), `metrics.json`, `manifest.json` (last).
The split is by product (a hash of split.seed and the product id).
"""

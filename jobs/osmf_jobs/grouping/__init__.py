"""The AudienceGrouping job (PAAG): `python -m osmf_jobs.grouping --config FILE`.

Steps (docs/contracts.md): `train` -> `cluster` [shards] -> `merge`. Input `data`: the logs root
(DESIGN §5 tables). Outputs in the run directory (DESIGN §5):
- `groups.parquet` (product_id, group_id, size, centroid, representatives, silhouette)
- `assignments.parquet` (product_id, user_id, group_id)
- `model/` (config.json + weights.npz: the numpy inference path, `osmf_jobs.paag.Assigner`)
- `features/features.npz` (cached encoder features), `metrics.json`, `manifest.json` (last).
"""

"""The KServe predictor of OSMF (the `serve` extra; never imports torch).

    python -m osmf_jobs.serving                    # ModelServer().start([GroupImagePredictor(...)])

- `predictor.GroupImagePredictor` — a `kserve.Model`: (product_id, viewer attributes) → (group_id,
  image_uri), v1 and v2 protocols; see its module docstring for the wire formats.
- `catalog` — the campaign manifest indexed for serving, and where it is found (/mnt/models, STORAGE_URI).

Configuration (the operator's InferenceService sets these): `STORAGE_URI` (the campaign run; KServe's
storage initializer copies it to /mnt/models), `OSMF_GROUPING_URI` (the grouping run; default: the one
campaign.json names), `OSMF_MODEL_NAME` (default `campaign`), `OSMF_IMAGE_BASE_URL` (optional: serve
`<base>/<run-relative path>` instead of the artifact URIs), `PROTOCOL` (v1|v2, informational: both are
served). docs/serving.md has the details.
"""

"""The shared core: what the operator and the jobs agree on, declared once.

- `osmf_core.api`: the typed API of the five kinds (CRDs, validation and job configs come from it)
  and the job-config contract (the one JSON document a Job receives, its exit codes);
- `osmf_core.store`: the artifact store over `s3://` and `file://`;
- `osmf_core.layout`: the artifact layout: every file name, table schema and shard path.

Light on purpose: pydantic, PyYAML and boto3 only. It imports neither the operator nor the jobs
(import-linter checks it), so both can depend on it and on nothing of each other.
"""

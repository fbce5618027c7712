"""PAAG: the preference model, batched per-product grouping, and assignment (DESIGN §6).

- `encoders`: frozen title / image encoders (builtin MiniLM and tiny ResNet, or model URIs).
- `model` (torch): `PreferenceModel`; `train`: BCE training on impression cells + held-out AUROC.
- `cluster`: `group_products` — K-means over many products at once, silhouette on a sample,
  percentile representatives, privacy floor.
- `inference` + `assign` (numpy only, no torch): `Assigner.load(uri)`, `.assign(product, attrs)`,
  `.embed(...)`, `.p_click(...)` — shared with the serving predictor.
- CLI: `python -m osmf_jobs.paag assign|score ...` (see `__main__`).

Importing this package does not import torch.
"""

from .assign import Assigner, UnknownProduct

__all__ = ["Assigner", "UnknownProduct"]

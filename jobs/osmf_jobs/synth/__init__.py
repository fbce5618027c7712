"""The synthetic ad world with known truth (`python -m osmf_jobs.synth OUT`).

- `world.generate(out, SynthConfig(...))` writes the DESIGN §5 tables plus `truth/` (see `world`).
- `truth.load_truth(root)`, `truth.click_probability(...)`: the true click model (see `truth`).
- `evaluate.evaluate(world_root, grouping_root, gaip_root=None)`: AUROC gap to the oracle, ARI
  against the true segments, NDCG@5 between groups against baselines (see `evaluate`).
"""

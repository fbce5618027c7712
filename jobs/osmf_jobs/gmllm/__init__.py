"""GMLLMTraining job (`python -m osmf_jobs.gmllm --config F`, step `train`).

task pretrain: the G-MLLM — a LLaVA-class model (`spec.baseModel.uri`, or builtin:tiny-llava) plus a
group projector, trained on the four tasks of `osmf_jobs.gmodel.data` from a GAIP run and its
grouping. task reward: the GRM — initialised from a pretrain run (`init` input), a scalar head
trained on GAIP pairs with a pairwise loss plus a CTR term.

Run directory: `model/` (a G-MLLM directory, see `osmf_jobs.gmodel`), `metrics.json`,
`eval/*.json` (per-group figures, sample prompts), `checkpoints/` (resume state), `manifest.json`.
Runs as one process or under torchrun (DDP; bf16 autocast on GPU).
"""

"""GroupDPORun job (`python -m osmf_jobs.groupdpo --config F`, step `train`).

Online Group-DPO (DESIGN §6): for `dpo.rounds` rounds, sample `dpo.samplesPerGroup` prompts per
(training product, group) at `dpo.temperature` from the policy, render them (`osmf_jobs.render`),
score them with the frozen GRM, keep best/worst as chosen/rejected, and train a LoRA adapter with the
DPO loss (β = `dpo.beta`) for `dpo.epochs` epochs. Every term is conditioned on the group's soft
tokens; the reference is the frozen pre-trained policy (the same weights with the adapter off).

Run directory: `adapter/` (peft LoRA adapter), `policy.json` (which policy the adapter belongs to),
`metrics.json`, `eval/rounds.json`, `eval/samples.json`, `checkpoints/` (one per round),
`manifest.json`. Load the result with `GroupPolicy.load(policy_run, adapter=this_run)`.
"""

"""The Group-DPO job with the world's true click model as its reward (the oracle ablation of
bench/generation.py): `python -m bench.oracle_dpo --config FILE` with OSMF_ORACLE_WORLD=<world root>.

Everything else is the real job (sampling, rendering, trl's DPO step, the held-out comparison); only
the reward differs, so the oracle run against the real one separates reward error from optimiser.
"""

from __future__ import annotations

import os


def cli() -> None:
    from osmf_jobs.groupdpo.config import GroupDPORunConfig
    from osmf_jobs.groupdpo.main import main
    from osmf_jobs.runtime import run_job
    from osmf_jobs.synth.oracle import truth_scorer_factory

    factory = truth_scorer_factory(os.environ["OSMF_ORACLE_WORLD"])
    run_job(lambda ctx: main(ctx, scorer_factory=factory), GroupDPORunConfig)


if __name__ == "__main__":
    cli()

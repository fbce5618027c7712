"""`python -m osmf_jobs.gmllm --config FILE` (under torchrun for several GPUs)"""


def cli() -> None:
    from osmf_jobs.runtime import run_job

    from .config import GMLLMTrainingConfig
    from .main import main

    run_job(main, GMLLMTrainingConfig)


if __name__ == "__main__":
    cli()

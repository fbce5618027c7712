"""`python -m osmf_jobs.groupdpo --config FILE` (under torchrun for several GPUs)"""


def cli() -> None:
    from osmf_jobs.runtime import run_job

    from .config import GroupDPORunConfig
    from .main import main

    run_job(main, GroupDPORunConfig)


if __name__ == "__main__":
    cli()

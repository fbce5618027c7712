"""`python -m osmf_jobs.gaip --config FILE`"""

from osmf_jobs.runtime import run_job


def _run() -> None:
    from osmf_jobs.gaip.config import GAIPDatasetConfig
    from osmf_jobs.gaip.main import main

    run_job(main, GAIPDatasetConfig)


if __name__ == "__main__":
    _run()

"""`python -m osmf_jobs.grouping --config FILE`"""

from osmf_jobs.runtime import run_job


def _run() -> None:
    from osmf_jobs.grouping.config import AudienceGroupingConfig
    from osmf_jobs.grouping.main import main

    run_job(main, AudienceGroupingConfig)


if __name__ == "__main__":
    _run()

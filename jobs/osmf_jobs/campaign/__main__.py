"""`python -m osmf_jobs.campaign --config FILE`"""

from osmf_jobs.runtime import run_job


def _run() -> None:
    from osmf_jobs.campaign.config import AdImageCampaignConfig
    from osmf_jobs.campaign.main import main

    run_job(main, AdImageCampaignConfig)


if __name__ == "__main__":
    _run()

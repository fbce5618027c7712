def cli() -> None:
    from osmf_jobs.runtime import run_job

    from .main import main

    run_job(main)


if __name__ == "__main__":
    cli()

"""torchrun that keeps the job contract's exit codes.

    python -m osmf_jobs.launch <torchrun arguments> -m osmf_jobs.<job> --config FILE

torchrun reports any failed worker as exit code 1, which would turn invalid input (65, not
retried) into a failure the Job retries up to its backoffLimit. Workers that exit through
`runtime.run_job` record their code in a folder this launcher gives them; when torchrun fails,
the launcher exits with 65 if any worker recorded it, else 75 if any recorded that, else with
torchrun's own code. SIGTERM/SIGINT are passed on to torchrun (pod deletion, preemption).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from osmf_core.api import INVALID_INPUT_EXIT_CODE, RETRIABLE_EXIT_CODE
from osmf_jobs.runtime import EXIT_CODE_DIR_ENV


def recorded_codes(folder: Path) -> set[int]:
    codes = set()
    for path in folder.glob("rank-*"):
        text = path.read_text().strip()
        if text.isdigit():
            codes.add(int(text))
    return codes


def contract_code(torchrun_code: int, codes: set[int]) -> int:
    if torchrun_code == 0:
        return 0
    for code in (INVALID_INPUT_EXIT_CODE, RETRIABLE_EXIT_CODE):
        if code in codes:
            return code
    return torchrun_code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="osmf-exit-codes-") as folder:
        child = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args],
                                 env={**os.environ, EXIT_CODE_DIR_ENV: folder})
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, _frame: child.send_signal(number))
        code = child.wait()
        return contract_code(code, recorded_codes(Path(folder)))


if __name__ == "__main__":
    sys.exit(main())

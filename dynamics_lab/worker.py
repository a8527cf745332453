"""`python -m dynamics_lab.worker RUN_DIR`: execute one prepared run (what launchers call)."""

import sys

from dynamics_lab.runner import execute
from dynamics_lab.tracking.rundir import RunDir

if __name__ == "__main__":
    result = execute(RunDir.open(sys.argv[1]))
    print(f"{result.status}: {(result.verdict or {}).get('summary', result.error or '')}")
    sys.exit(0 if result.status in ("completed", "diverged") else 1)

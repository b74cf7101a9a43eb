"""``python benchmarks/gpu_suite``: what ``bash benchmarks/gpu_suite.sh`` runs."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Python put this folder on sys.path; import the package from benchmarks/ instead (beside common.py), so that
# its modules are never also top-level modules of their own
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from gpu_suite.cli import main  # noqa: E402

sys.exit(main())

"""With the Spark extra installed, Great Expectations imports PySpark, whose connect package exits 0 from
any process whose ``__main__`` has no file (``python -c``, an xdist worker) unless its own dependencies are
there; the extra installs them (``pyspark[connect]``), so such a process keeps running."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT


def test_a_python_c_process_survives_importing_great_expectations_and_pyspark_connect() -> None:
    code = "import great_expectations, pyspark.sql.connect.utils as u; u.check_dependencies(); print('alive')"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr[-2000:]

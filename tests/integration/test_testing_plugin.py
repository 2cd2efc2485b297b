"""The README's example test, run as a user runs it: a pytest of their own, in another
directory, finding ``dynacron_env`` through the installed plugin (fast moto, as by default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[1] / "unit" / "test_readme_example.py"


def test_the_readme_example_passes_in_a_users_own_suite(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "test_reports.py")
    env = {k: v for k, v in os.environ.items() if k != "DYNACRON_TESTING_STOCK_MOTO"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reports.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 passed" in out.stdout

"""Figure 4: import time of the Lambda entrypoints, as a ratio to ``import boto3`` alone.

Each sample is a fresh interpreter timing one import (``time.perf_counter`` around it); the three
imports are interleaved so that the machine's noise hits them alike; the figure is the median
of ``repeats``. dynacron is imported from a copy of ``functions/`` without ``__pycache__`` and
with bytecode writing off, so every sample compiles dynacron's modules as a Lambda cold start
from a ``sam build`` package (sources only) does; dependencies keep their installed ``.pyc``.
The same is measured with dynacron's bytecode cached (``*_pyc``) and, with ``-X importtime``,
the packages that make up the difference are listed.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import ROOT

TARGETS = {
    "boto3": "boto3",
    "poller": "dynacron.handlers.poller",
    "worker": "dynacron.handlers.worker",
}
_SNIPPET = ("import time; t = time.perf_counter(); import {mod}; "
            "print((time.perf_counter() - t) * 1000)")


def _sample(mod: str, src: Path | None) -> float:
    env = dict(os.environ, PYTHONPATH=str(src or ""), PYTHONDONTWRITEBYTECODE="1",
               DYNACRON_TABLE="t", DYNACRON_QUEUE_URL="http://127.0.0.1:1/q",
               AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_METRICS_NAMESPACE="Bench")
    out = subprocess.run([sys.executable, "-c", _SNIPPET.format(mod=mod)], env=env, cwd=src,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _medians(plan: dict[str, tuple[str, Path | None]], repeats: int) -> dict[str, float]:
    """Median import ms per name of ``plan`` (name -> (module, source dir)); every round
    samples every name once, so the machine's noise hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in plan}
    for _ in range(repeats):
        for name, (mod, src) in plan.items():
            samples[name].append(_sample(mod, src))
    return {name: statistics.median(v) for name, v in samples.items()}


BUILT = ROOT / ".aws-sam" / "build"


def run_package(repeats: int = 10) -> dict[str, Any]:
    """The entrypoints imported from the packages ``make build`` deploys (``sam build`` plus
    bytecode), and from the same packages without bytecode (what ``sam build`` alone ships:
    Lambda's read-only /var/task means every cold start compiles it all); the baseline is
    ``import boto3`` as the Lambda runtime provides it (installed, with bytecode)."""
    dirs = {"poller": BUILT / "PollerFunction", "worker": BUILT / "WorkerFunction"}
    if not all((d / "dynacron").is_dir() for d in dirs.values()):
        return {"import_package": "not built (make build): figures from the source tree"}
    tmp = Path(tempfile.mkdtemp(prefix="dynacron-package-"))
    try:
        plan: dict[str, tuple[str, Path | None]] = {"boto3": ("boto3", None)}
        for key, d in dirs.items():
            shutil.copytree(d, tmp / key, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            plan[key] = (TARGETS[key], d)
            plan[f"{key}_src"] = (TARGETS[key], tmp / key)
        med = _medians(plan, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {"import_package": "make build (sam build + bytecode)",
                           "import_ms_boto3_runtime": round(med["boto3"], 1)}
    for key in dirs:
        out[f"import_ms_{key}_package"] = round(med[key], 1)
        out[f"import_ms_{key}_package_no_bytecode"] = round(med[f"{key}_src"], 1)
        out[f"import_ratio_{key}_package"] = round(med[key] / med["boto3"], 3)
        out[f"import_ratio_{key}_package_no_bytecode"] = round(med[f"{key}_src"] / med["boto3"], 3)
    return out


def _importtime(mod: str, src: Path) -> dict[str, int]:
    """Cumulative µs by top-level package for ``import mod`` (direct children of the root)."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {mod}"], env=env,
                         cwd=src, capture_output=True, text=True, check=True).stderr
    self_by_pkg: dict[str, int] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except ValueError:
            continue
        name = parts[2].strip().split(".")[0]
        self_by_pkg[name] = self_by_pkg.get(name, 0) + self_us
    return self_by_pkg


def run(repeats: int = 10) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dynacron-coldstart-"))
    try:
        nopyc = tmp / "src"
        shutil.copytree(ROOT / "functions" / "dynacron", nopyc / "dynacron",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        withpyc = tmp / "src_pyc"
        shutil.copytree(nopyc, withpyc)
        compileall.compile_dir(str(withpyc), quiet=1)
        plan: dict[str, tuple[str, Path | None]] = {}
        for key, mod in TARGETS.items():
            plan[key] = (mod, nopyc)
            plan[f"{key}_pyc"] = (mod, withpyc)
        med = _medians(plan, repeats)
        base = _importtime("boto3", nopyc)
        extra: dict[str, dict[str, float]] = {}
        for key in ("poller", "worker"):
            pkgs = _importtime(TARGETS[key], nopyc)
            diff = {p: us - base.get(p, 0) for p, us in pkgs.items() if us - base.get(p, 0) > 2000}
            extra[key] = {p: round(us / 1000, 1)
                          for p, us in sorted(diff.items(), key=lambda kv: -kv[1])[:8]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "import_ms_boto3": round(med["boto3"], 1),
        "import_ms_poller": round(med["poller"], 1),
        "import_ms_worker": round(med["worker"], 1),
        "import_ratio_poller": round(med["poller"] / med["boto3"], 3),
        "import_ratio_worker": round(med["worker"] / med["boto3"], 3),
        "import_ratio_poller_pyc": round(med["poller_pyc"] / med["boto3_pyc"], 3),
        "import_ratio_worker_pyc": round(med["worker_pyc"] / med["boto3_pyc"], 3),
        "import_repeats": repeats,
        "import_extra_ms_by_package": extra,
    }

"""``pip install dynacron`` works anywhere: the wheel, in a fresh venv outside the repository.

The wheel is built from the files git knows (tracked or not ignored), copied out of the checkout,
so it proves what a fresh clone builds. The venv first gets ``dynacron`` alone (the SDK and the
CLI: no moto, Flask or werkzeug; ``dynacron local`` says which extra to install), then
``dynacron[local]``, and runs ``dynacron local --demo`` inside a directory that holds a user's
own, unrelated ``template.yaml``: dynacron provisions from the template shipped in its package.

Dependencies come from the machine's package index (pip's cache makes a second run quick); the
whole test is bounded by ``pytest.mark.timeout``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
USER_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: a user's own SAM project, which dynacron local must not read
Resources:
  Bucket:
    Type: AWS::S3::Bucket
"""


def _run(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def _source_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT)
    src = _source_copy(base / "src")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                  str(base / "dist"), str(src)], timeout=300)
    assert built.returncode == 0, built.stderr
    (path,) = (base / "dist").glob("dynacron-*.whl")
    return path


def test_the_wheel_ships_the_root_template_and_py_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("dynacron/template.yaml") == (ROOT / "template.yaml").read_bytes()
    assert "dynacron/py.typed" in names  # the package's annotations are for its users too
    assert "dynacron/ui/templates/base.html" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_installed_from_the_wheel_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], timeout=120).returncode == 0
    python, dynacron = venv / "bin" / "python", venv / "bin" / "dynacron"
    project = tmp_path / "users-sam-project"
    project.mkdir()
    (project / "template.yaml").write_text(USER_TEMPLATE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DYNACRON_", "AWS_", "VIRTUAL_ENV", "PYTHONPATH"))}

    core = _run([str(python), "-m", "pip", "install", "-q", str(wheel)], timeout=400, env=env)
    assert core.returncode == 0, core.stderr
    probe = _run([str(python), "-c", "import importlib.util as u, dynacron; "
                  "dynacron.Scheduler, dynacron.Cron; "
                  "print([m for m in ('moto', 'flask', 'werkzeug') if u.find_spec(m)])"],
                 timeout=60, env=env, cwd=project)
    assert probe.stdout.strip() == "[]", probe.stderr
    nudge = _run([str(dynacron), "local", "--demo"], timeout=60, env=env, cwd=project)
    assert nudge.returncode != 0
    assert "pip install 'dynacron[local]'" in nudge.stderr

    full = _run([str(python), "-m", "pip", "install", "-q", f"dynacron[local] @ {wheel.as_uri()}"],
                timeout=400, env=env)
    assert full.returncode == 0, full.stderr
    demo = _run([str(dynacron), "local", "--demo", "--duration", "10", "--port", "0"],
                timeout=240, env=env, cwd=project)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "demo passed" in demo.stdout + demo.stderr

"""Installable anywhere: which template ``dynacron local`` provisions from, and what it says
without the ``[local]`` extra. (The wheel itself: tests/integration/test_wheel.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dynacron import local as local_pkg
from dynacron.cli import cli
from dynacron.errors import ConfigurationError, LocalExtraMissing
from dynacron.local import provision

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_provisions_from_its_root_template_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")  # a user's own SAM project
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNACRON_TEMPLATE", raising=False)
    assert provision.find_template() == ROOT / "template.yaml"


def test_installed_it_provisions_from_the_packaged_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages" / "dynacron" / "local" / "provision.py"
    site.parent.mkdir(parents=True)
    packaged = site.parents[1] / "template.yaml"
    packaged.write_text("Resources: {}\n")
    monkeypatch.setattr(provision, "_HERE", site)
    monkeypatch.setattr(provision, "_CHECKOUT", site.parents[3])
    monkeypatch.setattr(provision, "PACKAGED_TEMPLATE", packaged)
    (site.parents[3] / "template.yaml").write_text("not this one\n")
    (site.parents[3] / "pyproject.toml").write_text("")  # not a checkout: no functions/ dir
    monkeypatch.delenv("DYNACRON_TEMPLATE", raising=False)
    assert provision.find_template() == packaged
    packaged.unlink()
    with pytest.raises(FileNotFoundError, match="reinstall dynacron"):
        provision.find_template()


def test_dynacron_template_overrides_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("Resources: {}\n")
    monkeypatch.setenv("DYNACRON_TEMPLATE", str(mine))
    assert provision.find_template() == mine
    monkeypatch.setenv("DYNACRON_TEMPLATE", str(tmp_path / "gone.yaml"))
    with pytest.raises(FileNotFoundError, match=r"DYNACRON_TEMPLATE=.*gone\.yaml"):
        provision.find_template()


def _without(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = local_pkg.find_spec
    monkeypatch.setattr(local_pkg, "find_spec", lambda n: None if n in names else real(n))


def test_without_the_local_extra_dynacron_local_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "moto", "flask")
    result = CliRunner().invoke(cli, ["local", "--demo"])
    assert result.exit_code != 0
    assert "dynacron local needs the local runtime (moto, flask not installed)" in result.output
    assert "pip install 'dynacron[local]'" in result.output


def test_without_moto_dynacron_testing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynacron import testing

    _without(monkeypatch, "moto")
    with pytest.raises(LocalExtraMissing, match=r"pip install 'dynacron\[local\]'") as info:
        testing.local().__enter__()
    assert isinstance(info.value, ConfigurationError)


def test_one_command_line_the_runtime_has_no_argparse_of_its_own() -> None:
    from dynacron.local import runtime

    assert not hasattr(runtime, "_cli")
    assert "argparse" not in (ROOT / "functions/dynacron/local/runtime.py").read_text()

"""Invoke the installed ``dynacron`` CLI (click) against a test environment's resources."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result

from dynacron.cli import _Config, cli

CONFIG_ENV = ("AWS_ENDPOINT_URL", "DYNACRON_TABLE", "DYNACRON_QUEUE_URL", "DYNACRON_DLQ_URL")


def clear_config_env(monkeypatch: Any) -> None:
    """The CLI must take its resources from the flags below, not from a developer's shell."""
    for name in CONFIG_ENV:
        monkeypatch.delenv(name, raising=False)


def resource_flags(env: Any) -> list[str]:
    s = env.settings
    return ["--table", s.table_name, "--queue-url", s.queue_url, "--dlq-url", s.dlq_url,
            "--region", "us-east-1"]  # fmt: skip


def invoke(
    env: Any,
    *args: str,
    scheduler: Any = None,
    columns: int | None = 80,
    flags: bool = True,
    input: str | None = None,
) -> Result:
    """Run ``dynacron [flags] *args`` in a terminal ``columns`` wide (80 unless told).

    The shared config reuses the env's clients (and ``scheduler``'s clock, when given), so a
    frozen clock drives the CLI too."""
    s = env.settings
    config = _Config(s.table_name, s.queue_url, s.dlq_url, None, "us-east-1", scheduler)
    argv = [*resource_flags(env), *args] if flags else list(args)
    runner = CliRunner(env={"COLUMNS": str(columns)} if columns else None)
    return runner.invoke(cli, argv, input=input, obj=config)


def checked(env: Any, *args: str, code: int = 0, **kwargs: Any) -> Result:
    """``invoke`` that asserts the exit code (and shows the output when it differs)."""
    result = invoke(env, *args, **kwargs)
    assert result.exit_code == code, (result.output, result.exception)
    return result

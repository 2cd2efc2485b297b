"""``dynacron ui``: serve the dashboard (registered on the ``dynacron`` group by ``cli.py``).

Starlette, Jinja2 and uvicorn are imported only when the command runs: they come with
``pip install 'dynacron[ui]'``, the SDK and the rest of the CLI do not need them.
"""

from __future__ import annotations

import click

from ..cli import EXIT_CODES_EPILOG, cli, pass_config
from ..cli import Config as _Config
from ..errors import ConfigurationError

DEFAULT_PORT = 8766
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@cli.command("ui", epilog=EXIT_CODES_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--read-only", is_flag=True, help="No redrive buttons; every POST is refused.")
@pass_config
def ui_cmd(cfg: _Config, host: str, port: int, read_only: bool) -> None:
    """A web dashboard: tasks, a task's runs and lateness, the DLQ with redrive, stats.

    It uses this shell's configuration (eval the export line of `dynacron local`, or a
    deployed stack's with your AWS credentials). There is no login: keep it on 127.0.0.1.
    """
    try:
        import uvicorn

        from .app import create_app
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the dashboard needs {exc.name}: pip install 'dynacron[ui]'"
        ) from None
    app = create_app(cfg.scheduler(), read_only=read_only)
    if host not in _LOOPBACK:
        click.echo(
            f"warning: listening on {host}: anyone who reaches it acts with your credentials",
            err=True,
        )
    mode = "read-only" if read_only else "redrive enabled"
    click.echo(f"dynacron ui: http://{host}:{port}/ ({mode}); Ctrl-C to stop", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

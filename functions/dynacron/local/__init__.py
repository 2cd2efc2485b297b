"""The whole system on one machine: an embedded moto server, the poller and worker loops.

Needs the ``[local]`` extra (``pip install 'dynacron[local]'``: moto with its server, i.e. Flask
and werkzeug); ``pip install dynacron`` alone is the SDK and the CLI. Importing this package
imports none of them.
"""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import LocalExtraMissing

LOCAL_EXTRA = "dynacron[local]"
SERVER_MODULES = ("moto", "werkzeug", "flask")  # moto[server]: what ThreadedMotoServer imports


def require_local(what: str, modules: tuple[str, ...] = SERVER_MODULES) -> None:
    """Raise ``LocalExtraMissing`` naming the extra to install if a module ``what`` needs is
    missing."""
    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise LocalExtraMissing(
            f"{what} needs the local runtime ({', '.join(missing)} not installed): "
            f"pip install '{LOCAL_EXTRA}'"
        )

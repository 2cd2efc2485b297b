"""The pytest plugin (entry point ``pytest11``): the ``dynacron_env`` fixture.

Installed with dynacron; pytest loads it by itself. Importing it costs nothing: moto and the
engine are imported only when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def dynacron_env() -> Iterator[Any]:
    """A fresh ``dynacron.testing.local()`` environment per test (clock at now, whole second).

    For another start instant or settings, use ``with dynacron.testing.local(start=...)``.
    """
    from dynacron.testing import local

    with local() as env:
        yield env

"""Where the browser test writes its screenshots (kept apart so other tests can ask without
importing the browser test, whose module registers handlers)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def screenshot_dir() -> Path:
    """An ignored directory; DYNACRON_UPDATE_SCREENSHOTS=1 writes the README's (tracked)
    docs/ui-*.png instead, so a test run does not rewrite tracked files."""
    if os.environ.get("DYNACRON_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs"
    return ROOT / ".pytest-results" / "screenshots"

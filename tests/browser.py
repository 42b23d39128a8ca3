"""The one way the tests start a browser: Debian's chromium, headless, offline-friendly flags."""
from __future__ import annotations

import shutil

#: Debian's chromium (never a downloaded browser).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def launch(pw):
    """A headless :data:`CHROMIUM` from a ``playwright.sync_api`` instance ``pw``."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=_ARGS)

"""The one polling wait: a check tried until it holds or a deadline passes, then a stated reason.

Every wait for an outcome (bring-up steps, operations, drills, verify's read-back, deploy) goes
through :func:`until`, so each one that times out says what it waited for, for how long, and what it
saw last.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pgha.errors import PghaError

Check = Callable[[], tuple[bool, str]]
"""One try: (reached, what was seen)."""


class TimedOut(PghaError):
    """A wait's outcome was not reached before its deadline."""

    exit_code = 1

    def __init__(self, what: str, timeout: float, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what}: not reached after {timeout:g} s: {reason}", hint=hint)
        self.what, self.timeout, self.reason = what, timeout, reason


def until(what: str, check: Check, timeout: float, *, interval: float = 0.25,
          progress: Callable[[str], None] | None = None, hint: str | None = None) -> str:
    """Call ``check`` until it reports the outcome reached; return what it saw then.

    A check that raises has not reached it yet (a probe failing mid-fault is expected); its exception
    is what was seen. After ``timeout`` seconds raise :class:`TimedOut` with the last thing seen.
    ``progress`` hears each intermediate observation (a live display).
    """
    deadline = time.monotonic() + timeout
    seen = "no answer yet"
    while True:
        try:
            ok, seen = check()
        except Exception as exc:  # noqa: BLE001 - a failing probe is a 'not yet', reported if it lasts
            ok, seen = False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if ok:
            return seen
        if progress is not None:
            progress(seen)
        if time.monotonic() >= deadline:
            raise TimedOut(what, timeout, seen, hint=hint)
        time.sleep(interval)

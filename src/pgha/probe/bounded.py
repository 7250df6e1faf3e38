"""Probes run concurrently, each bounded by a deadline: a node that hangs cannot hang pgha.

A frozen node still accepts TCP (the kernel answers) and then says nothing, so a client waits for its
own timeout — libpq's is at least 2 s. :func:`gather` waits for all the calls together and stops at the
deadline whatever they do; a call still running then is recorded as :class:`NoAnswer` and left to end
on its own timeout in a daemon thread, which never holds the process at exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)

PROBE_TIMEOUT = 1.0
"""Seconds a single probe of one node may take (one HTTP request, one TCP connect, one command)."""


@dataclass(frozen=True)
class NoAnswer:
    """A call that raised or did not return before the deadline: why, in a few words."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def short(exc: BaseException) -> str:
    """An exception in one line: its type and the last line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1]}" if text else type(exc).__name__


class Launched:
    """Calls running in daemon threads since :func:`launch`; :meth:`results` waits for them up to a deadline."""

    def __init__(self, calls: Mapping[Any, Callable[[], Any]]) -> None:
        self.keys = list(calls)
        self.started = time.monotonic()
        self._results: dict[Any, Any] = {}
        self._threads = [threading.Thread(target=self._run, args=(k, c), daemon=True, name=f"probe-{k}")
                         for k, c in calls.items()]
        for t in self._threads:
            t.start()

    def _run(self, key: Any, call: Callable[[], Any]) -> None:
        try:
            self._results[key] = call()
        except Exception as exc:  # noqa: BLE001 - a failed probe is a fact about the node
            self._results[key] = NoAnswer(short(exc))

    def results(self, timeout: float) -> dict[Any, Any]:
        """Each key's result, or a :class:`NoAnswer` when its call raised or was still running ``timeout``
        seconds after the launch."""
        deadline = self.started + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        late = NoAnswer(f"no answer within {timeout:g} s")
        return {k: self._results.get(k, late) for k in self.keys}


def launch(calls: Mapping[Any, Callable[[], Any]]) -> Launched:
    """Start every call at once, each in a daemon thread; collect them with :meth:`Launched.results`."""
    return Launched(calls)


def gather(calls: Mapping[K, Callable[[], Any]], timeout: float = PROBE_TIMEOUT) -> dict[K, Any]:
    """Run every call at once; each key maps to its result, or to a :class:`NoAnswer` when the call
    raised or was still running ``timeout`` seconds after the start."""
    return launch(calls).results(timeout)

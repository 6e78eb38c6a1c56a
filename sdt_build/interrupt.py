"""Stopping on a signal: SIGTERM (a batch system's or a service manager's stop) handled the way
Ctrl-C is, and the few steps a second signal must not cut short (making or removing a container),
so that an interrupted command leaves nothing behind."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

STOPS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal (Ctrl-C is SIGINT, a batch system's stop is SIGTERM)."""

    def __init__(self, name: str = "SIGINT"):
        super().__init__(name)
        self.signal = name

    @property
    def exit_code(self) -> int:
        return 128 + getattr(signal, self.signal)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_arrived: list[str] = []  # signals that stopped the block, in case Python swallowed their exception


@contextlib.contextmanager
def terminate_as_interrupt():
    """While the block runs in the main thread, SIGTERM stops it the way Ctrl-C does: every
    ``finally`` runs (outputs written, containers removed), where by default SIGTERM would end
    Python with no clean-up at all. Both are remembered, so that one Python swallowed (raised
    while a ``__del__`` ran, which Python only prints) is raised again by ``raise_if_lost``. A
    handler someone else set is left alone."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if not _in_main_thread():
        yield
        return

    def stop(signum, frame):
        name = signal.Signals(signum).name
        _arrived.append(name)
        raise Interrupted(name)

    taken = [stop_signal for stop_signal, default in defaults.items() if signal.getsignal(stop_signal) is default]
    _arrived.clear()
    for stop_signal in taken:
        signal.signal(stop_signal, stop)
    try:
        yield
    finally:
        for stop_signal in taken:
            signal.signal(stop_signal, defaults[stop_signal])
        _arrived.clear()


def raise_if_lost() -> None:
    """Raise the interrupt a signal asked for if it has not stopped the block yet (its exception was
    raised where Python ignores exceptions); long loops call this on every turn."""
    if _arrived:
        raise Interrupted(_arrived[-1])


class shielded:
    """A block no SIGINT or SIGTERM can cut short: one that arrives meanwhile takes effect when it
    ends (as the handler it finds then says), unless an interrupt is already on its way out. Only
    the main thread receives signals; elsewhere this does nothing."""

    def __enter__(self) -> shielded:
        self.arrived: list[int] = []
        self.previous = {}
        if _in_main_thread():
            self.previous = {stop: signal.signal(stop, self._defer) for stop in STOPS}
        return self

    def _defer(self, signum, frame) -> None:
        self.arrived.append(signum)

    def __exit__(self, kind, value, traceback) -> None:
        for stop, handler in self.previous.items():
            signal.signal(stop, handler if handler is not None else signal.SIG_DFL)
        stopping = isinstance(value or sys.exc_info()[1], KeyboardInterrupt)
        if self.arrived and not stopping:
            signal.raise_signal(self.arrived[0])

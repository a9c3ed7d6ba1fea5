"""Ctrl-C during training: finish the iteration in progress and save, as Darknet users wish it
did (a second Ctrl-C quits at once)."""

import signal
import sys


class Interrupt:
    """Ctrl-C sets a flag; the loop stops after the iteration in progress (a second one quits)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if hasattr(signal, "SIGINT"):
            try:
                self._old = signal.signal(signal.SIGINT, self._handle)
            except ValueError:          # not the main thread: leave Ctrl-C alone
                self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this iteration and saving (Ctrl-C again to quit now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

"""The program's start-up: no garbage collection while it imports and builds.

Start-up makes some 50,000 objects that live to the end of the run (modules, the data
dictionary, the compiled policy); the collector would scan them again and again (about
a hundred collections, one of them full) and free none. The program pauses it while it
starts, then freezes what start-up made (never scanned again, here nor in the forked
workers, whose pages then stay shared) and collects as usual from there on.
"""

from __future__ import annotations

import gc


def pause_collection() -> None:
    """Pause the garbage collector for the program's start-up (see end_start_up)."""
    gc.disable()


def end_start_up() -> None:
    """Freeze what start-up made and resume collection; does nothing if never paused.

    Only the program pauses collection: code that runs a command in its own process (a
    test, an application calling ``medveil.cli.main.main``) keeps its collector as it is.
    """
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()

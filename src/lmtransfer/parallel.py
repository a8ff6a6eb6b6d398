"""Worker processes that die with their parent.

A ``ProcessPoolExecutor`` worker does not notice when its parent is killed (SIGKILL, OOM killer):
it finishes its task, keeps writing into the output folder and then waits forever on a queue
nobody reads. Every pool of lmtransfer starts its workers with :func:`exit_with_parent`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: the kernel kills this process the moment ``parent_pid`` dies (Linux),
    and a watchdog thread ends it within a second elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def process_pool(workers: int, mp_context=None) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp_context, initializer=exit_with_parent,
                               initargs=(os.getpid(),))

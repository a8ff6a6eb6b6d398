"""Worker processes that die with their parent, and pools that stop when their caller stops.

A ``ProcessPoolExecutor`` worker does not notice when its parent is killed (SIGKILL, OOM killer):
it finishes its task, keeps writing into the output folder and then waits forever on a queue
nobody reads. Every pool of lmtransfer starts its workers with :func:`exit_with_parent`. And a
plain ``with ProcessPoolExecutor()`` block that is left by an exception (Ctrl-C, SIGTERM) waits
for every task already submitted, the queued ones included: :func:`process_pool` cancels those
and stops the workers instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def process_pool(workers: int, mp_context=None) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers exit when this process dies. Leaving the block normally waits
    for the tasks; leaving it by an exception cancels the queued tasks and kills the workers, so an
    interrupted stage stops now (its finished pieces are kept; the unfinished ones are rewritten)."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context, initializer=exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=5)
        raise
    pool.shutdown(wait=True)

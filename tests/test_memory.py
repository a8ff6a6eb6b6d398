"""The CLI's allocator setting: large temporaries reuse freed memory instead of fresh zeroed pages."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lmtransfer.memory import ENVIRONMENT

CYCLES = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from lmtransfer.memory import keep_freed_memory
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a 64 MiB temporary, written and freed, as a volume-sized NumPy expression does
    block = np.ones(16 * 2**20, dtype=np.float32)
    del block
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(CYCLES), mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting; a no-op elsewhere")
def test_freed_blocks_are_reused_without_new_page_faults():
    default, kept = _page_faults("default"), _page_faults("keep")
    # glibc's default maps and unmaps each 64 MiB block, faulting its pages in every cycle; kept, only the first cycle faults
    assert kept * 5 < default, (kept, default)


def test_the_setting_reaches_child_processes_and_a_users_own_value_wins(monkeypatch):
    from lmtransfer.memory import keep_freed_memory

    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    keep_freed_memory()
    assert os.environ["MALLOC_MMAP_MAX_"] == "65536" and os.environ["MALLOC_TRIM_THRESHOLD_"] == ENVIRONMENT["MALLOC_TRIM_THRESHOLD_"]

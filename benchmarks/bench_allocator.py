"""The CLI's allocator setting (lmtransfer.memory): one torso phantom case rendered in a fresh process
with glibc's defaults and with freed memory kept, alternated; CPU seconds, system seconds, page faults,
peak memory, and an image+label hash that must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lmtransfer.memory import ENVIRONMENT

RENDER = """
import hashlib, json, resource, sys, time
import SimpleITK as sitk
if sys.argv[1] == "kept":
    from lmtransfer.memory import keep_freed_memory
    assert keep_freed_memory()
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, render_case
start = time.perf_counter()
case = render_case(int(sys.argv[2]), PhantomCTConfig())
wall = time.perf_counter() - start
digest = hashlib.md5(sitk.GetArrayViewFromImage(case.image).tobytes() + sitk.GetArrayViewFromImage(case.labels).tobytes())
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "user": use.ru_utime, "sys": use.ru_stime, "faults": use.ru_minflt,
                  "peak_mb": use.ru_maxrss / 1024, "md5": digest.hexdigest()}))
"""


def render(mode: str, case: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    done = subprocess.run([sys.executable, "-c", RENDER, mode, str(case)], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main(cases=(3, 10)) -> None:
    runs = {"default": [], "kept": []}
    for case in cases:
        for mode in runs:
            runs[mode].append(render(mode, case))
        assert runs["default"][-1]["md5"] == runs["kept"][-1]["md5"], f"case {case}: the allocator setting changed the phantom"
    mean = {mode: {key: sum(r[key] for r in rows) / len(rows) for key in ("wall", "user", "sys", "faults", "peak_mb")}
            for mode, rows in runs.items()}
    for mode, m in mean.items():
        print(f"phantom case, glibc {mode:7s}: {m['wall']:6.2f} s wall, {m['user']:6.2f} s user, {m['sys']:5.2f} s system, "
              f"{m['faults'] / 1e3:6.0f}k page faults, peak {m['peak_mb']:5.0f} MB")
    d, k = mean["default"], mean["kept"]
    print(f"allocator: wall ratio default/kept {d['wall'] / k['wall']:.2f}x, system time {d['sys'] / k['sys']:.1f}x, "
          f"page faults {d['faults'] / k['faults']:.1f}x, peak memory kept/default {k['peak_mb'] / d['peak_mb']:.2f}x, images identical")


if __name__ == "__main__":
    main()

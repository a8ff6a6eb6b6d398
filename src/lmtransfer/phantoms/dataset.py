"""What every phantom set shares: per-case file layout, resumable rendering, cleanup of extra cases.

A finished case is certified by a stamp kept *beside* the set (``.<set>.resume/``), not in it: the
stamp holds the fingerprint of the settings and the rendering code, and the size and time of the
case's files. So a change of the code that leaves the voxels as they were re-renders every case
and leaves the set's bytes, and its DVC hash, unchanged: the stages after it are not run again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lmtransfer.parallel import process_pool


def temp_path(final: Path) -> Path:
    """Where ``final`` is written before an atomic rename: hidden, and private to this process, so a
    restart never writes into the temporary file of a worker that is still going down."""
    return final.with_name(f".tmp_{os.getpid()}_{final.name}")


def remove_stale_temps(out_dir: Path) -> None:
    """Temporary files of killed runs (they would change the folder's DVC hash)."""
    for folder in [Path(out_dir) / sub for sub in ("images", "labels", "landmarks", "meta")] + [resume_dir(out_dir)]:
        for path in folder.glob(".tmp_*"):
            path.unlink(missing_ok=True)


def resume_dir(out_dir: Path) -> Path:
    """Where the stamps of the set in ``out_dir`` live (hidden, beside it)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.resume"


def case_id(index: int) -> str:
    return f"case_{index:03d}"


@dataclass(frozen=True)
class CasePaths:
    """One case's files (the meta file written last) and the stamp that says they are complete."""

    image: Path
    labels: Path
    landmarks: Path
    meta: Path
    stamp: Path

    @classmethod
    def of(cls, out_dir: Path, cid: str) -> CasePaths:
        out_dir = Path(out_dir)
        return cls(
            out_dir / "images" / f"{cid}.nii.gz", out_dir / "labels" / f"{cid}.nii.gz",
            out_dir / "landmarks" / f"{cid}.mrk.json", out_dir / "meta" / f"{cid}.json", resume_dir(out_dir) / f"{cid}.json",
        )

    def _files(self) -> dict[str, list[int]]:
        """Size and modification time of each file: a file replaced or touched since the stamp voids it."""
        return {f"{p.parent.name}/{p.name}": [p.stat().st_size, p.stat().st_mtime_ns] for p in (self.image, self.labels, self.landmarks, self.meta)}

    def complete(self, fingerprint: str) -> bool:
        """Written by code and settings with ``fingerprint``, and untouched since."""
        try:
            stamp = json.loads(self.stamp.read_text())
            return stamp.get("fingerprint") == fingerprint and stamp.get("files") == self._files()
        except (json.JSONDecodeError, OSError):   # no stamp, or a file missing
            return False

    def mark_complete(self, fingerprint: str) -> None:
        """Stamp the case as finished (after its files are all written)."""
        self.stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.stamp)
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "files": self._files()}))
        os.replace(tmp, self.stamp)


def render_missing(render_and_write: Callable, cfg, out_dir: Path, n_cases: int, fingerprint: str, workers: int,
                   desc: str, progress: bool) -> None:
    """Call ``render_and_write(index, cfg, out_dir, fingerprint)`` for every case not yet complete with
    ``fingerprint`` (computed once here: it hashes the rendering code, too slow to redo for every case)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(n_cases) if not CasePaths.of(out_dir, case_id(i)).complete(fingerprint)]
    remove_extra_cases(out_dir, n_cases)
    remove_stale_temps(out_dir)
    bar = tqdm(total=n_cases, initial=n_cases - len(todo), desc=desc, unit="case", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with process_pool(workers) as pool:
            for _ in pool.map(render_and_write, todo, [cfg] * len(todo), [out_dir] * len(todo), [fingerprint] * len(todo)):
                bar.update()
    else:
        for i in todo:
            render_and_write(i, cfg, out_dir, fingerprint)
            bar.update()
    bar.close()


def remove_extra_cases(out_dir: Path, n_cases: int) -> None:
    """Cases beyond ``n_cases`` (from an earlier, larger run) would leak into later stages: remove them."""
    for folder, suffix in ((out_dir / "images", ".nii.gz"), (out_dir / "labels", ".nii.gz"), (out_dir / "landmarks", ".mrk.json"),
                           (out_dir / "meta", ".json"), (resume_dir(out_dir), ".json")):
        if not folder.is_dir():
            continue
        for path in folder.glob(f"case_*{suffix}"):
            number = path.name[len("case_") : -len(suffix)]
            if number.isdigit() and int(number) >= n_cases:
                path.unlink()

"""Where lesion patches come from: a registry of sources, each a settings dataclass (its keys sit in
``params.yaml`` under ``lesion.<name>``) that names the files it reads and builds a :class:`LesionSet`.

A new source is one more dataclass with ``inputs`` and ``build``, registered in
:data:`LESION_SOURCES`: the command line (``lesion-patches --source``) and the parameter checks
pick it up from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmtransfer.transfer.lesions import LesionPatchConfig, LesionSet
from lmtransfer.transfer.nodules import LungNoduleLesions


@dataclass(frozen=True)
class PhantomLesions:
    """The built-in head MRA phantom: aneurysms at their annotated centres, normal look-alikes on the
    *extracted* vessels. Its folders are the ``phantom_mra`` and ``vessels`` stages' outputs (filled
    in from those sections by the config, so they are named once)."""

    phantom_dir: Path
    vessels_dir: Path

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.phantom_dir), Path(self.vessels_dir))

    def build(self, patch: LesionPatchConfig, workers: int = 1, progress: bool = False) -> LesionSet:
        from lmtransfer.transfer.lesions import phantom_lesion_set

        return phantom_lesion_set(Path(self.phantom_dir), Path(self.vessels_dir), patch, workers, progress=progress)


@dataclass(frozen=True)
class MedMNISTLesions:
    """A MedMNIST 3D ``.npz`` (NoduleMNIST3D, AdrenalMNIST3D, ...): each image a case at 1 mm."""

    npz: str = ""                                 # e.g. ../shared/data/nodulemnist3d.npz
    positive_labels: tuple[int, ...] = (1,)       # which labels are lesions

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.npz),) if self.npz else ()

    def build(self, patch: LesionPatchConfig, workers: int = 1, progress: bool = False) -> LesionSet:
        from lmtransfer.transfer.datasets import medmnist_lesion_set

        if not self.npz:
            raise FileNotFoundError("lesion.source is medmnist but lesion.medmnist.npz is empty in params.yaml")
        return medmnist_lesion_set(Path(self.npz), tuple(self.positive_labels), patch.pixels)


@dataclass(frozen=True)
class Luna16Lesions:
    """A LUNA16-style folder: ``<seriesuid>.mhd/.raw`` (or NIfTI, NRRD) volumes and a candidates CSV
    ``seriesuid,coordX,coordY,coordZ,class`` in world (LPS) millimetres."""

    dir: str = ""
    candidates: str = ""
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    max_negatives_per_case: int = 40

    def inputs(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in (self.dir, self.candidates) if p)

    def build(self, patch: LesionPatchConfig, workers: int = 1, progress: bool = False) -> LesionSet:
        from lmtransfer.transfer.datasets import luna_lesion_set

        if not (self.dir and self.candidates):
            raise FileNotFoundError("lesion.source is luna16: set lesion.luna16.dir and lesion.luna16.candidates in params.yaml")
        return luna_lesion_set(Path(self.dir), Path(self.candidates), patch, tuple(self.hu_window), self.max_negatives_per_case)


LESION_SOURCES: dict[str, type] = {"phantom": PhantomLesions, "medmnist": MedMNISTLesions, "luna16": Luna16Lesions,
                                   "lung_nodules": LungNoduleLesions}

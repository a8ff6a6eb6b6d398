"""Toy detection fixtures: a CT with two known blobs, a stand-in network that reads the centre voxel, its card."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from torch import nn

from lmtransfer.io.coords import Geometry
from lmtransfer.models.checkpoint import ModelCard, save_checkpoint

BLOBS_LPS = {"bright": np.array([12.0, -6.0, 20.0]), "dark": np.array([-18.0, 10.0, -14.0])}


def toy_ct(spacing=(1.5, 1.5, 2.5), direction=np.diag([1.0, -1.0, 1.0])) -> sitk.Image:
    """A soft-tissue box in air with a bright (+940 HU) and a dark (-460 HU) Gaussian blob (sigma 5 mm) and a table."""
    size = (64, 64, 40)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction.ravel().tolist())
    centre_index = (np.asarray(size) - 1) / 2
    image.SetOrigin(tuple(-(direction * np.asarray(spacing)) @ centre_index))
    geometry = Geometry.from_sitk(image)
    ijk = np.stack(np.meshgrid(*(np.arange(s) for s in size), indexing="ij"), axis=-1)
    lps = geometry.index_to_lps(ijk.reshape(-1, 3)).reshape(*size, 3)
    volume = np.full(size, -1000.0)
    body = (np.abs(lps[..., 0]) < 38) & (np.abs(lps[..., 1]) < 30) & (np.abs(lps[..., 2]) < 40)
    volume[body] = 40.0
    volume[(lps[..., 1] > 36) & (lps[..., 1] < 40)] = 200.0  # the table: outside the body mask
    for amplitude, centre in ((900.0, BLOBS_LPS["bright"]), (-500.0, BLOBS_LPS["dark"])):
        volume += amplitude * np.exp(-((lps - centre) ** 2).sum(-1) / (2 * 5.0**2))
    out = sitk.GetImageFromArray(volume.T.astype(np.float32))
    out.CopyInformation(image)
    return out


class CentreIntensityNet(nn.Module):
    """Logits from the mean of the patch centres: bright -> "bright", -460 HU inside tissue -> "dark", "absent" never."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[-1] // 2
        v = x[:, :, p - 1 : p + 1, p - 1 : p + 1].mean(dim=(1, 2, 3))
        air = torch.relu(-0.2 - x.mean(dim=(1, 2, 3)))  # patches half in air: the body edge, not a blob
        return torch.stack([12 * v, 20 * (0.3 - (v + 0.46).abs()) - 40 * air, torch.full_like(v, -20.0), torch.full_like(v, 1.5)], dim=1)


CARD = ModelCard(architecture="stand-in", config={}, class_names=("bright", "dark", "absent", "background"),
                 patch={"fov_mm": 24.0, "pixels": 8}, normalisation={"hu_window": [-1000.0, 1000.0]})


def _tiny_checkpoint(path):
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.training.train import TrainConfig

    model = MiniVGG(3, depth=1, width=4, convs_per_block=1, input_pixels=32, feature_dim=8)
    save_checkpoint(path, model, model_card(model, ["carina", "heart_apex", "background"], PatchCacheConfig(), TrainConfig()))
    return path


def _shape_cases(n=8, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    layout = {"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 40.0], "c": [30.0, 0.0, 20.0], "d": [0.0, 50.0, 0.0]}
    rows = []
    for case in range(n):
        shift = rng.normal(0, 30, 3)
        for name, xyz in layout.items():
            x, y, z = np.asarray(xyz) + shift + rng.normal(0, 1.0, 3)
            rows.append({"case": f"k{case}", "landmark": name, "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z, "in_image": True})
    return pd.DataFrame(rows)


def _truth() -> pd.DataFrame:
    return pd.DataFrame({
        "case": "c1", "landmark": ["T1_body_centre", "carina", "liver_dome", "pubic_symphysis"],
        "x_lps_mm": [0.0, 0.0, 0.0, 0.0], "y_lps_mm": [0.0, 0.0, 0.0, 0.0], "z_lps_mm": [0.0, 10.0, 20.0, 30.0],
        "in_image": [True, True, True, False],
    })


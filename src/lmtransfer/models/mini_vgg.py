"""mini-VGG: the research's small VGG-style CNN for 32 x 32 2.5D patches."""

from __future__ import annotations

import torch
from torch import nn


class MiniVGG(nn.Module):
    """VGG-style blocks (``convs_per_block`` x [conv3x3-BN-ReLU], then 2 x 2 max-pool), a fully
    connected feature layer and a linear classifier.

    Args:
        n_classes: outputs (landmark kinds + 1 for "not a landmark").
        depth: number of blocks; each halves the spatial size (32 px input allows up to 5).
        width: channels of the first block, doubled per block up to 256.
        feature_dim: size of the penultimate layer, the features used for transfer.

    Shapes: input ``(B, in_channels, P, P)`` -> logits ``(B, n_classes)``;
    :meth:`features` -> ``(B, feature_dim)`` (after ReLU, before dropout and the classifier).
    """

    def __init__(self, n_classes: int, depth: int = 3, width: int = 32, convs_per_block: int = 2,
                 in_channels: int = 3, input_pixels: int = 32, feature_dim: int = 256, dropout: float = 0.3):
        super().__init__()
        if input_pixels % (2**depth) != 0:
            raise ValueError(f"{input_pixels} px input cannot be halved {depth} times")
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(depth):
            out = min(width * 2**block, 256)
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*layers)
        side = input_pixels // 2**depth
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, n_classes)
        self.config = {"n_classes": n_classes, "depth": depth, "width": width, "convs_per_block": convs_per_block,
                       "in_channels": in_channels, "input_pixels": input_pixels, "feature_dim": feature_dim, "dropout": dropout}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features for transfer learning, ``(B, feature_dim)``."""
        return self.feature(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))

    def widened(self, n_classes: int, old_to_new: dict[int, int], seed: int = 0) -> MiniVGG:
        """A copy with ``n_classes`` outputs: all weights kept, old classifier rows moved to new indices.

        The new classifier rows are drawn from a generator seeded with ``seed`` (the global RNG is
        left as it was), so class expansion gives the same weights on every run.
        """
        config = {**self.config, "n_classes": n_classes}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MiniVGG(**config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("classifier.")}
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            for old, new in old_to_new.items():
                model.classifier.weight[new] = self.classifier.weight[old]
                model.classifier.bias[new] = self.classifier.bias[old]
        return model


class OffsetVoter(MiniVGG):
    """mini-VGG that, from a patch anywhere near landmarks, says which landmarks lie within ``reach_mm``
    of its centre and where they are: the detector's coarse pass votes with it.

    Shapes: input ``(B, in_channels, P, P)`` -> ``(B, 4 L)``: ``L`` presence logits, then ``L x 3`` offsets
    from the patch centre to each landmark in LPS, in units of ``reach_mm`` (:meth:`split` unpacks them).
    """

    def __init__(self, n_landmarks: int, reach_mm: float = 40.0, depth: int = 3, width: int = 16, convs_per_block: int = 2,
                 in_channels: int = 3, input_pixels: int = 32, feature_dim: int = 256, dropout: float = 0.1):
        super().__init__(4 * n_landmarks, depth, width, convs_per_block, in_channels, input_pixels, feature_dim, dropout)
        if reach_mm <= 0:
            raise ValueError(f"reach_mm must be positive, got {reach_mm}")
        self.n_landmarks, self.reach_mm = n_landmarks, float(reach_mm)
        self.config = {"n_landmarks": n_landmarks, "reach_mm": float(reach_mm),
                       **{k: v for k, v in self.config.items() if k != "n_classes"}}

    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Presence logits ``(B, L)`` and offsets in mm ``(B, L, 3)`` from :meth:`forward`'s outputs."""
        n = self.n_landmarks
        return outputs[:, :n], outputs[:, n:].reshape(-1, n, 3) * self.reach_mm

"""lmtransfer: landmark pre-training of CNNs on 3D CT and transfer to lesion recognition."""

__version__ = "0.1.0"

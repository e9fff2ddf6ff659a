"""Writes checkpoints that duoclip must refuse with a clear message (tests/fixtures/bad/).

foreign_keys.pt: a real PyTorch zip state dict of a tiny ResNet-style model — valid file,
keys of no CLIP layout.
"""
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bad"


def foreign_keys() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "conv1.weight": torch.randn(8, 3, 3, 3, generator=g),
        "bn1.weight": torch.randn(8, generator=g),
        "bn1.bias": torch.randn(8, generator=g),
        "fc.weight": torch.randn(10, 8, generator=g),
        "fc.bias": torch.randn(10, generator=g),
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(foreign_keys(), OUT / "foreign_keys.pt")
    print("wrote", OUT / "foreign_keys.pt")

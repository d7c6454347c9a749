"""Loads each backbone written by scripts/pytorch-fixture.ts into PyTorch with the README's lines
(load_state_dict strict=True) and compares eval-mode features with the engine's.
    python3 scripts/pytorch/check.py DIR
"""
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file, save_file


# --- the README's lines -------------------------------------------------------------------------------
class ConvNetS(nn.Module):
    """convnet-s: four conv3x3-BN-ReLU blocks (32/64/128/256), max-pool 2 after the first three, global pool."""

    def __init__(self, in_channels=1):
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate([32, 64, 128, 256]):
            layers += [nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c = w
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x).flatten(1)


def odc_backbone(backbone, stem="cifar", in_channels=3):
    if backbone == "convnet-s":
        return ConvNetS(in_channels)
    model = getattr(torchvision.models, backbone)(weights=None)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    model.fc = nn.Identity()
    return model
# -------------------------------------------------------------------------------------------------------


def main(folder):
    worst = 0.0
    for backbone, stem, channels in [("convnet-s", "cifar", 1), ("resnet18", "cifar", 3), ("resnet18", "imagenet", 3), ("resnet50", "cifar", 3)]:
        name = f"{backbone}-{stem}"
        model = odc_backbone(backbone, stem, channels)
        model.load_state_dict(load_file(f"{folder}/{name}.safetensors"), strict=True)
        model.eval()
        io = load_file(f"{folder}/{name}.io.safetensors")
        with torch.no_grad():
            got = model(io["input"])
        want = io["features"]
        # relative to the feature vector's size: f32 sums in another order differ by rounding, which grows with depth
        err = ((got - want).norm() / want.norm()).item()
        worst = max(worst, err)
        print(f"{name}: features {tuple(got.shape)}, ||difference|| / ||features|| = {err:.2e}")
        if got.shape != want.shape or not err < 1e-4:
            print(f"{name}: PyTorch's features differ from the engine's", file=sys.stderr)
            return 1
    # the other way: a torchvision resnet18 state dict (fc and num_batches_tracked included), converted with
    # the README's line, and its features, for scripts/pytorch-fixture.ts --verify to load and compare
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    for m in tv.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_file(tv.state_dict(), f"{folder}/torchvision-resnet18.safetensors")
    tv.fc = nn.Identity()
    tv.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        save_file({"input": x, "features": tv(x)}, f"{folder}/torchvision-resnet18.io.safetensors")
    print(f"pytorch check: all backbones load with strict=True and give the engine's features (worst {worst:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""PyTorch baselines for bench/gpu.sh, on the same GPU in the same call: rows named as ours so the table
lines them up. Strict f32 unless a row says tf32, bf16 or f16 (half-precision operands for torch.mm; autocast
for the steps, f16 with a GradScaler as our `--precision f16` scales its loss). Synthetic data already on the GPU.

  python3 bench/torch_baseline.py gemm --sizes 1024,2048,4096,8192 --out torch-gemm.json
  python3 bench/torch_baseline.py steps --out torch-steps.json     # ODC step: resnet18 CIFAR b512, resnet50 224^2 b256
  python3 bench/torch_baseline.py memory --out torch-memory.json   # N 1,281,167, D 256, K 10,000
"""
import argparse
import json
import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(fn, repeats=7, warmup=2):
    """Median milliseconds of fn() on the GPU (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def gemm(args):
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        a = torch.rand(n, n, device="cuda") - 0.5
        b = torch.rand(n, n, device="cuda") - 0.5
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = timed(lambda: torch.mm(a, b))
            rows.append({"name": f"gemm f32 {n}^3 tf32 {'on' if tf32 else 'off'}", "ms": ms, "value": 2 * n**3 / ms / 1e9, "unit": "TFLOP/s", "note": "torch.mm"})
        torch.backends.cuda.matmul.allow_tf32 = False
        for label, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
            ah, bh = a.to(dtype), b.to(dtype)
            ms = timed(lambda: torch.mm(ah, bh))
            rows.append({"name": f"gemm {label} {n}^3", "ms": ms, "value": 2 * n**3 / ms / 1e9, "unit": "TFLOP/s", "note": f"torch.mm {label} operands"})
            del ah, bh
    return rows


class OdcNet(nn.Module):
    """torchvision backbone -> neck (linear, relu, linear) -> normalised features -> linear head."""

    def __init__(self, arch, cifar_stem, k, hidden=512, feat=128):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        width = net.fc.in_features
        net.fc = nn.Identity()
        self.backbone = net
        self.neck = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, feat))
        self.head = nn.Linear(feat, k)

    def forward(self, x):
        f = F.normalize(self.neck(self.backbone(x)), dim=1)
        return f, self.head(f)


# The step in each precision: (row suffix, tf32 on, autocast dtype or None, GradScaler, channels_last).
PRECISIONS = [
    ("", False, None, False, False),
    (" tf32", True, None, False, False),
    (" bf16 autocast", False, torch.bfloat16, False, True),
    (" f16 autocast", False, torch.float16, True, True),
]


def steps(args):
    rows = []
    cases = [
        ("ODC step resnet18 cifar 32x32 b512", "resnet18", True, 32, 512, 1000, 50000),
        ("ODC step resnet50 224x224 b256", "resnet50", False, 224, 256, 10000, 20000),
    ]
    for (name, arch, cifar, size, batch, k, n), (suffix, tf32, autocast, scaled, channels_last) in [
        (c, p) for c in cases for p in PRECISIONS
    ]:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        model = OdcNet(arch, cifar, k).cuda()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
        feats = F.normalize(torch.randn(n, 128, device="cuda"), dim=1)
        labels = torch.randint(0, k, (n,), device="cuda")
        centroids = F.normalize(torch.randn(k, 128, device="cuda"), dim=1)
        weights = torch.ones(k, device="cuda") / k
        images = torch.randn(batch, 3, size, size, device="cuda")
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        scaler = torch.amp.GradScaler("cuda", enabled=scaled)

        def step():
            idx = torch.randint(0, n, (batch,), device="cuda")
            with torch.autocast("cuda", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                f, logits = model(images)
                loss = F.cross_entropy(logits, labels[idx], weight=weights)
            f = f.float()
            with torch.no_grad():  # ODC memory update (spec 2.3): momentum, renormalise, relabel
                feats[idx] = F.normalize(0.5 * feats[idx] + 0.5 * f.detach(), dim=1)
                labels[idx] = (feats[idx] @ centroids.t()).argmax(dim=1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        ms = timed(step, repeats=5)
        what = {"": "f32", " tf32": "tf32", " bf16 autocast": "bf16 autocast, channels_last", " f16 autocast": "f16 autocast + GradScaler, channels_last"}[suffix]
        rows.append({"name": name + suffix, "ms": ms, "value": batch * 1000 / ms, "unit": "img/s", "note": f"PyTorch {what}, torchvision"})
        del model, opt, feats
        torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return rows


def memory(args):
    torch.backends.cuda.matmul.allow_tf32 = False
    n, d, k, batch = 1_281_167, 256, 10_000, 512
    tag = f"N={n} D={d} K={k}"
    feats = F.normalize(torch.randn(n, d, device="cuda").clamp_min(0), dim=1)
    centroids = feats[torch.randperm(n, device="cuda")[:k]].clone()
    labels = torch.randint(0, k, (n,), device="cuda")

    def assign(x, c, chunk=65536):
        out = torch.empty(x.shape[0], dtype=torch.long, device="cuda")
        half = (c * c).sum(1) / 2
        for s in range(0, x.shape[0], chunk):
            out[s : s + chunk] = (x[s : s + chunk] @ c.t() - half).argmax(dim=1)
        return out

    def means(x, lab, c):
        sums = torch.zeros(k, d, device="cuda").index_add_(0, lab, x)
        counts = torch.bincount(lab, minlength=k).unsqueeze(1)
        return torch.where(counts > 0, sums / counts.clamp_min(1), c)

    idx = torch.randint(0, n, (batch,), device="cuda")
    new = torch.randn(batch, d, device="cuda")

    def update():
        feats[idx] = F.normalize(0.5 * feats[idx] + 0.5 * new, dim=1)
        labels[idx] = (feats[idx] @ centroids.t()).argmax(dim=1)

    def kmeans():
        c = feats[torch.randperm(n, device="cuda")[:k]].clone()
        for _ in range(20):
            c = means(feats, assign(feats, c), c)
        assign(feats, c)

    return [
        {"name": f"update + relabel B={batch}, {tag}", "ms": timed(update, repeats=20), "note": "PyTorch f32"},
        {"name": f"full centroid recompute, {tag}", "ms": timed(lambda: means(feats, labels, centroids), repeats=5), "note": "PyTorch f32"},
        {"name": f"initial k-means 20 it, {tag}", "ms": timed(kmeans, repeats=1, warmup=0), "note": "PyTorch f32"},
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["gemm", "steps", "memory"])
    parser.add_argument("--sizes", default="1024,2048,4096,8192")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = {"gemm": gemm, "steps": steps, "memory": memory}[args.mode](args)
    with open(args.out, "w") as f:
        json.dump({"stage": f"torch-{args.mode}", "device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=2)
    for r in rows:
        print(f"torch {r['name']}: {r['ms']:.3f} ms" + (f", {r['value']:.2f} {r['unit']}" if "value" in r else ""))


if __name__ == "__main__":
    main()

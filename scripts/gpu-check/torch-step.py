#!/usr/bin/env python3
"""PyTorch baseline for the GPU check: a ResNet34 training step (37 classes, AdamW, cross-entropy, fp32 with TF32 off)
on CUDA, the same work as `bench:compute --backend webgpu --arch resnet34` on the same GPU in the same run.

Usage: torch-step.py SIZE:BS [SIZE:BS ...] [--steps N]
Prints per configuration: `torch-step: resnet34 224px bs 64: N img/s (wall, median of N steps), peak M MiB`.
"""
import statistics
import sys
import time

import torch
import torchvision

args = [a for a in sys.argv[1:] if not a.startswith('--')]
steps = int(sys.argv[sys.argv.index('--steps') + 1]) if '--steps' in sys.argv else 10
args = [a for a in args if a != str(steps)] or ['224:64']
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
dev = torch.device('cuda')
for spec in args:
    size, bs = (int(x) for x in spec.split(':'))
    torch.manual_seed(0)
    model = torchvision.models.resnet34(num_classes=37).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.randn(bs, 3, size, size, device=dev)
    y = torch.randint(0, 37, (bs,), device=dev)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20
    print(f'torch-step: resnet34 {size}px bs {bs}: {bs / med:.1f} img/s (wall, median of {steps} steps, '
          f'{med * 1000:.1f} ms/step), peak {peak:.0f} MiB, torch {torch.__version__}, fp32 no TF32', flush=True)

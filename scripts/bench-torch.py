#!/usr/bin/env python3
"""PyTorch reference for `npm run bench:compute`: one training step of torchvision's ResNet body with fastai's head.

The same step as the trainer's (forward + backward + AdamW of the whole, unfrozen model; 37 classes; random inputs,
training mode), on ONE thread (`torch.set_num_threads(1)`), so that images per CPU-second compare with one worker
process of pets-trainer. Prints one JSON line: median wall and process CPU time (`time.process_time`) per step over
`--reps` steps after `--warmup` untimed ones (default 2, as `npm run bench:compute` passes: its own whole-step
count, `BENCH_WARMUP_STEPS` of `src/training/learner/step-bench.ts`), images per second and per CPU-second, and peak RSS.

Usage (Debian: `apt-get install python3-torch python3-torchvision`, PyTorch 1.13):
    /usr/bin/python3 scripts/bench-torch.py --arch resnet34 --size 128 --bs 16 --reps 3
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def fastai_head(features: int, classes: int) -> nn.Module:
    """fastai v1 `create_head(nf, nc)`: concat pool, BN, dropout 0.25, linear 512, ReLU, BN, dropout 0.5, linear."""

    class ConcatPool(nn.Module):
        def forward(self, x):
            return torch.cat([torch.amax(x, dim=(2, 3)), torch.mean(x, dim=(2, 3))], dim=1)

    return nn.Sequential(ConcatPool(), nn.BatchNorm1d(2 * features), nn.Dropout(0.25), nn.Linear(2 * features, 512),
                         nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='resnet34', choices=['resnet18', 'resnet34', 'resnet50'])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--bs', type=int, default=16)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    body = getattr(torchvision.models, args.arch)()
    features = body.fc.in_features
    model = nn.Sequential(*list(body.children())[:-2], fastai_head(features, 37))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.rand(args.bs, 3, args.size, args.size) * 2 - 1
    y = torch.arange(args.bs) % 37
    loss_fn = nn.CrossEntropyLoss()
    walls, cpus = [], []
    if args.warmup < 0 or args.reps < 1:
        parser.error('--warmup must be >= 0 and --reps >= 1')
    for i in range(args.warmup + args.reps):
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if i >= args.warmup:
            walls.append(w)
            cpus.append(c)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(json.dumps({
        'framework': f'pytorch {torch.__version__}', 'threads': torch.get_num_threads(), 'arch': args.arch,
        'size': args.size, 'batch': args.bs, 'reps': args.reps, 'warmup': args.warmup, 'stepMs': wall * 1000,
        'stepCpuMs': cpu * 1000,
        'imagesPerSecond': args.bs / wall, 'imagesPerCpuSecond': args.bs / cpu,
        'peakRssMiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == '__main__':
    main()

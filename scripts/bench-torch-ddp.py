#!/usr/bin/env python3
"""PyTorch DDP reference for `npm run bench:scaling -- --torch`: W processes × 1 thread, gloo, data-parallel steps.

Each rank runs the step of `scripts/bench-torch.py` (torchvision ResNet body + fastai head, 37 classes, training
mode, AdamW, random inputs of `--bs` images per rank) wrapped in `DistributedDataParallel` over the gloo backend on
localhost, with `torch.set_num_threads(1)`: the PyTorch counterpart of W pets-trainer workers, one core each. Weak
scaling, as bench:scaling: the global batch is W × bs. Prints one JSON line per world size: the median wall time of a
step (rank 0, steps separated by a barrier so that every rank has finished), images per second = W × bs / step, and
rank 0's process CPU time per step.

Usage (Debian: `apt-get install python3-torch python3-torchvision`, PyTorch 1.13):
    /usr/bin/python3 scripts/bench-torch-ddp.py --arch resnet34 --size 128 --bs 16 --workers 1,2 --steps 4 --warmup 1
"""
import argparse
import importlib.util
import json
import os
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torchvision


def fastai_head(features: int, classes: int) -> nn.Module:
    """The head of bench-torch.py (fastai v1 `create_head`), loaded from there so that both stay one definition."""
    spec = importlib.util.spec_from_file_location('bench_torch', Path(__file__).with_name('bench-torch.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fastai_head(features, classes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, args: argparse.Namespace, out: 'mp.Queue') -> None:
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    body = getattr(torchvision.models, args.arch)()
    model = nn.Sequential(*list(body.children())[:-2], fastai_head(body.fc.in_features, 37))
    model.train()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(rank)
    x = torch.rand(args.bs, 3, args.size, args.size, generator=gen) * 2 - 1
    y = torch.arange(args.bs) % 37
    loss_fn = nn.CrossEntropyLoss()
    walls, cpus = [], []
    for i in range(args.warmup + args.steps):
        dist.barrier()
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss_fn(ddp(x), y).backward()
        opt.step()
        dist.barrier()
        if i >= args.warmup:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    if rank == 0:
        wall = statistics.median(walls)
        out.put({'framework': f'pytorch {torch.__version__} DDP gloo', 'workers': world, 'threadsPerWorker': 1,
                 'arch': args.arch, 'size': args.size, 'bs': args.bs, 'steps': args.steps,
                 'stepSeconds': wall, 'imagesPerSecond': world * args.bs / wall,
                 'rank0CpuSecondsPerStep': statistics.median(cpus)})
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='resnet34', choices=['resnet18', 'resnet34', 'resnet50'])
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--bs', type=int, default=16, help='images per worker and step')
    parser.add_argument('--workers', default='1,2', help='world sizes, comma list')
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--warmup', type=int, default=1)
    args = parser.parse_args()
    ctx = mp.get_context('spawn')
    for world in [int(w) for w in args.workers.split(',')]:
        out = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=rank_main, args=(r, world, port, args, out)) for r in range(world)]
        for p in procs:
            p.start()
        result = out.get()
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f'rank exited with {p.exitcode}')
        print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()

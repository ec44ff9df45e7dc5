#!/usr/bin/env python3
"""PyTorch DDP reference for `npm run bench:scaling -- --torch`: W processes × 1 thread, gloo, data-parallel steps.

Each rank runs the step of `scripts/bench-torch.py` (torchvision ResNet body + fastai head, 37 classes, training
mode, AdamW) wrapped in `DistributedDataParallel` over the gloo backend on localhost, with `torch.set_num_threads(1)`:
the PyTorch counterpart of W pets-trainer workers, one core each. Weak scaling, as bench:scaling: the global batch is
W × bs. Inputs (`--data`):
- `random` (default): one fixed batch of random tensors per rank: no decoding, no augmentation (the step alone);
- `photos DIR`: the photos of DIR (or DIR/images; label = file name before its last `_`, as the pets tutorial's
  regex) read as a DDP user would: a `DataLoader` per rank over a `DistributedSampler` (shuffled, `drop_last`), with
  `--num-workers` loader processes per rank (default 1: each rank's one decode helper, as a pets-trainer worker's one
  decode thread) and the tutorial-like torchvision transforms of `photo_transforms` (PIL decode,
  RandomResizedCrop to `--size`, flip, rotation, perspective warp, brightness/contrast, ImageNet normalisation).
  The time to fetch each batch counts in the step, as the workers' data wait does in bench:scaling.
Prints one JSON line per world size: the median wall time of a step (rank 0, steps separated by a barrier so that
every rank has finished), images per second = W × bs / step, rank 0's process CPU time per step, and (photos) the
CPU time of its loader processes per step.

Usage (Debian: `apt-get install python3-torch python3-torchvision`, PyTorch 1.13):
    /usr/bin/python3 scripts/bench-torch-ddp.py --arch resnet34 --size 128 --bs 16 --workers 1,2 --steps 4 --warmup 1
    /usr/bin/python3 scripts/bench-torch-ddp.py ... --data photos ../shared/datasets/oxford-iiit-pet-sample --num-workers 1
"""
import argparse
import importlib.util
import json
import os
import queue
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torchvision
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def photo_transforms(size: int) -> 'T.Compose':
    """torchvision counterpart of fastai v1 `get_transforms()` + `size` + `normalize(imagenet_stats)` (the tutorial's):
    random crop of the photo resized to `size` (RandomResizedCrop, torchvision's defaults), horizontal flip p 0.5,
    rotation ±10° p 0.75, perspective warp 0.2 p 0.75, brightness/contrast 0.2 p 0.75, ImageNet normalisation."""
    return T.Compose([
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.RandomRotation(10)], p=0.75),
        T.RandomPerspective(distortion_scale=0.2, p=0.75),
        T.RandomApply([T.ColorJitter(brightness=0.2, contrast=0.2)], p=0.75),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class Photos(torch.utils.data.Dataset):
    """The photos of a folder, labelled by the pets tutorial's rule (file name up to its last `_`), decoded with PIL."""

    def __init__(self, root: str, size: int):
        folder = Path(root) / 'images' if (Path(root) / 'images').is_dir() else Path(root)
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
        if not self.paths:
            raise SystemExit(f'--data photos {root}: no .jpg/.png files in {folder}')
        names = sorted({p.stem.rsplit('_', 1)[0] for p in self.paths})
        self.labels = [names.index(p.stem.rsplit('_', 1)[0]) for p in self.paths]
        self.transform = photo_transforms(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert('RGB')), self.labels[i]


def batches(args: argparse.Namespace, rank: int, world: int):
    """Endless (x, y) batches of this rank: the random batch again and again, or the photos' loader epoch after epoch."""
    if args.data[0] == 'random':
        gen = torch.Generator().manual_seed(rank)
        x = torch.rand(args.bs, 3, args.size, args.size, generator=gen) * 2 - 1
        y = torch.arange(args.bs) % 37
        while True:
            yield x, y
    data = Photos(args.data[1], args.size)
    sampler = torch.utils.data.distributed.DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=42, drop_last=True)
    loader = torch.utils.data.DataLoader(data, batch_size=args.bs, sampler=sampler, drop_last=True, num_workers=args.num_workers,
                                         persistent_workers=args.num_workers > 0)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def children_cpu_seconds() -> float:
    """CPU seconds of this process's live child processes (the DataLoader's workers), from /proc; 0 elsewhere."""
    total = 0.0
    try:
        for pid in Path(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read_text().split():
            fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except OSError:
        pass
    return total


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
    source = batches(args, rank, world)
    loss_fn = nn.CrossEntropyLoss()
    walls, cpus, waits = [], [], []
    for i in range(args.warmup + args.steps):
        dist.barrier()
        if i == args.warmup:
            loader_cpu0 = children_cpu_seconds()
        w0, c0 = time.perf_counter(), time.process_time()
        x, y = next(source)
        waits.append(time.perf_counter() - w0)
        opt.zero_grad(set_to_none=True)
        loss_fn(ddp(x), y).backward()
        opt.step()
        dist.barrier()
        if i >= args.warmup:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    loader_cpu = (children_cpu_seconds() - loader_cpu0) / args.steps
    if rank == 0:
        wall = statistics.median(walls)
        out.put({'framework': f'pytorch {torch.__version__} DDP gloo', 'workers': world, 'threadsPerWorker': 1,
                 'arch': args.arch, 'size': args.size, 'bs': args.bs, 'steps': args.steps, 'data': args.data[0],
                 'loaderWorkers': args.num_workers if args.data[0] == 'photos' else 0,
                 'stepSeconds': wall, 'imagesPerSecond': world * args.bs / wall,
                 'rank0CpuSecondsPerStep': statistics.median(cpus), 'rank0LoaderCpuSecondsPerStep': loader_cpu,
                 'rank0DataWaitSeconds': statistics.median(waits[args.warmup:])})
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='resnet34', choices=['resnet18', 'resnet34', 'resnet50'])
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--bs', type=int, default=16, help='images per worker and step')
    parser.add_argument('--workers', default='1,2', help='world sizes, comma list')
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--data', nargs='+', default=['random'], metavar='random | photos DIR',
                        help='inputs: one random batch per rank (default), or the photos of DIR through a DataLoader')
    parser.add_argument('--num-workers', type=int, default=1, help='DataLoader worker processes per rank (photos)')
    args = parser.parse_args()
    if not ((args.data == ['random']) or (len(args.data) == 2 and args.data[0] == 'photos')):
        parser.error(f'--data must be "random" or "photos DIR", got {" ".join(args.data)}')
    if args.num_workers < 0:
        parser.error(f'--num-workers must be an integer ≥ 0, got {args.num_workers}')
    ctx = mp.get_context('spawn')
    for world in [int(w) for w in args.workers.split(',')]:
        out = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=rank_main, args=(r, world, port, args, out)) for r in range(world)]
        for p in procs:
            p.start()
        result = None
        while result is None:
            try:
                result = out.get(timeout=5)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    for p in procs:
                        p.kill()
                    raise SystemExit(f'a rank exited with {dead[0]} (see its error above)')
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f'rank exited with {p.exitcode}')
        print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()

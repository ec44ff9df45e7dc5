#!/usr/bin/env python3
"""Seeded PyTorch parity case for `npm run parity`: a torchvision ResNet, a batch, and float64 reference values.

Writes two safetensors files into --out (the layout of ../shared/fixtures/resnet-tiny, see its README):

- ``weights.safetensors``: the model's state_dict in float32 (conv OIHW, linear [out, in], BatchNorm weight, bias,
  running_mean, running_var F32 and num_batches_tracked I64).
- ``case.safetensors``: ``input_nchw [b,3,h,w] F32``, ``labels [b] I64``, and the reference values computed by
  PyTorch in **float64** from exactly those float32 weights and inputs: ``logits_eval``, ``logits_train``
  ``[b, classes]``, ``loss_train [1]`` (mean cross-entropy, train-mode BatchNorm) and ``grad.<param>`` (torch
  layouts), all F64. Its ``__metadata__`` holds ``torch_fp32_rel_error``: a JSON object giving, for every reference
  quantity, PyTorch float32's own relative error ``max|fp32 - fp64| / max|fp64|`` on the same case (the parity
  tolerance of a gradient is ``max(1e-3, 2 x`` that ``)``), plus how the case was made.

The model: torchvision ``resnet18|resnet34|resnet50`` or ``tiny`` (``ResNet(BasicBlock, [1,1,1,1])``) with its own
random initialisation under ``torch.manual_seed(seed)``, then every BatchNorm's weight ~ U(0.5, 1.5), bias ~
U(-0.2, 0.2), running_mean ~ U(-0.3, 0.3), running_var ~ U(0.5, 2) (non-trivial values, as in the tiny fixture, so
that a wrong use of any of them shows). Inputs ~ N(0, 1) (ImageNet-normalised scale), labels uniform.

A gradient is not continuous at a ReLU kink: a pre-activation within float32 rounding of 0 may take the other branch
in a float32 run than in the float64 reference (PyTorch's own float32 run included), which moves a last-stage weight
gradient by up to a few %. ``--masked-by MASKS`` (masks written by ``npm run parity -- --dump-masks MASKS``) reads the
case in --out and writes ``case-masked.safetensors`` next to it: the same references recomputed in float64 with every
ReLU forced to the given decisions, so that the comparison measures arithmetic error only. Its metadata holds
``relu_masks: forced``, the number of decisions that differ from float64's own, and PyTorch float32's error with
the same forced masks.

Usage: make-case.py --arch resnet34 --size 224 --out /tmp/case-r34-224 [--batch 4] [--classes 1000] [--seed 0]
       [--grads stages|all] [--threads N]
       make-case.py --arch resnet34 --out /tmp/case-r34-224 --masked-by /tmp/case-r34-224/masks-wasm.safetensors
Needs Debian's python3-torch and python3-torchvision (1.13 / 0.14). Deterministic for a given seed and torch build.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

ARCHS = ('tiny', 'resnet10', 'resnet18', 'resnet34', 'resnet50')
DTYPES = {torch.float32: 'F32', torch.float64: 'F64', torch.int64: 'I64', torch.uint8: 'U8'}
NUMPY = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'U8': np.uint8}


def build(arch: str, classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if arch in ('tiny', 'resnet10'):
        from torchvision.models.resnet import BasicBlock, ResNet
        model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=classes)
    else:
        model = getattr(torchvision.models, arch)(num_classes=classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model


def grad_names(model: torch.nn.Module, which: str) -> list:
    """`all`, or `stages`: the stem, and in every stage its first block's and last block's parameters, and fc."""
    names = [n for n, _ in model.named_parameters()]
    if which == 'all':
        return names
    keep = []
    for n in names:
        parts = n.split('.')
        if not parts[0].startswith('layer'):
            keep.append(n)  # conv1, bn1, fc
            continue
        blocks = sorted({int(m.split('.')[1]) for m in names if m.startswith(parts[0] + '.')})
        if int(parts[1]) in (blocks[0], blocks[-1]):
            keep.append(n)
    return keep


def run(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, names: list) -> dict:
    """Eval logits, then train-mode logits, mean cross-entropy and the gradients of `names` (model is modified)."""
    model.eval()
    with torch.no_grad():
        out = {'logits_eval': model(x)}
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    params = dict(model.named_parameters())
    out['logits_train'] = logits.detach()
    out['loss_train'] = loss.detach().reshape(1)
    for n in names:
        out['grad.' + n] = params[n].grad.detach()
    return out


def rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.abs().max().item()
    diff = (a.double() - ref).abs().max().item()
    return 0.0 if diff == 0 else diff / scale


def write_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    header = {'__metadata__': metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        data = t.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)  # keep the byte buffer 8-aligned
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path: str) -> tuple:
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    tensors = {}
    for name, v in header.items():
        if name == '__metadata__':
            continue
        begin, end = v['data_offsets']
        arr = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=NUMPY[v['dtype']]).reshape(v['shape'])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, header.get('__metadata__', {})


class ForcedRelu(torch.nn.Module):
    """Stands in for a block's (or the stem's) ReLU: applies the recorded decisions of the BN each call follows."""

    def __init__(self, names: list, masks: dict, flips: dict):
        super().__init__()
        self.names, self.masks, self.flips, self.calls = names, masks, flips, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = self.names[self.calls % len(self.names)]
        self.calls += 1
        mask = self.masks['mask.' + name]
        if tuple(mask.shape) != tuple(x.shape):
            raise ValueError(f'mask.{name} has shape {list(mask.shape)}, the ReLU input {list(x.shape)}')
        m = mask.to(x.dtype)
        self.flips[name] = int(((x > 0).to(x.dtype) != m).sum())
        return x * m


def force_masks(model: torch.nn.Module, masks: dict) -> dict:
    """Replaces every ReLU by a ForcedRelu (torchvision calls a block's relu after bn1, [bn2,] and the residual add)."""
    flips = {}
    model.relu = ForcedRelu(['bn1'], masks, flips)
    for name, mod in model.named_modules():
        if isinstance(mod, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)):
            count = 2 if isinstance(mod, torchvision.models.resnet.BasicBlock) else 3
            mod.relu = ForcedRelu([f'{name}.bn{i}' for i in range(1, count + 1)], masks, flips)
    return flips


def masked(a: argparse.Namespace) -> int:
    started = time.time()
    state, _ = read_safetensors(os.path.join(a.out, 'weights.safetensors'))
    case, meta = read_safetensors(os.path.join(a.out, 'case.safetensors'))
    masks, mask_meta = read_safetensors(a.masked_by)
    names = [k[5:] for k in case if k.startswith('grad.')]
    x, labels = case['input_nchw'], case['labels']
    classes = case['logits_eval'].shape[1]
    results, flips = {}, {}
    for dtype in (torch.float64, torch.float32):
        model = build(a.arch, classes, 0)
        model.load_state_dict(state)
        model = model.to(dtype)
        flips[dtype] = force_masks(model, masks)
        results[dtype] = run(model, x.to(dtype), labels, names)
    ref, f32 = results[torch.float64], results[torch.float32]
    ref['logits_eval'] = case['logits_eval']  # eval mode has no batch-dependent ReLU input: the unmasked reference
    fp32_error = {k: rel_error(f32[k], v) for k, v in ref.items() if k != 'logits_eval'}
    out = {'input_nchw': x, 'labels': labels, **ref}
    flipped = sum(flips[torch.float64].values())
    path = os.path.join(a.out, 'case-masked.safetensors')
    write_safetensors(path, out, {**meta, 'relu_masks': 'forced', 'masks_from': mask_meta.get('backend', a.masked_by),
                                  'relu_flips_vs_float64': str(flipped),
                                  'torch_fp32_rel_error': json.dumps(fp32_error)})
    print(f'make-case: {path} ({flipped} ReLU decisions differ from float64\'s own; {time.time() - started:.1f} s)')
    return 0


def main(argv: list) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', required=True, choices=ARCHS)
    p.add_argument('--size', type=int, default=224, help='image height and width in pixels (>= 32)')
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--classes', type=int, default=1000)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--grads', choices=('stages', 'all'), default='stages')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    p.add_argument('--out', required=True, help='output folder (created)')
    p.add_argument('--masked-by', help='ReLU masks (npm run parity -- --dump-masks): write case-masked.safetensors')
    a = p.parse_args(argv)
    if a.masked_by:
        return masked(a)
    if a.size < 32 or a.batch < 2 or a.classes < 2:
        p.error(f'--size must be >= 32, --batch >= 2, --classes >= 2; got {a.size}, {a.batch}, {a.classes}')
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    started = time.time()
    model = build(a.arch, a.classes, a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=gen)
    labels = torch.randint(0, a.classes, (a.batch,), generator=gen)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    names = grad_names(model, a.grads)

    ref = run(build(a.arch, a.classes, a.seed).double(), x.double(), labels, names)
    f32 = run(model, x, labels, names)
    fp32_error = {k: rel_error(f32[k], v) for k, v in ref.items()}

    os.makedirs(a.out, exist_ok=True)
    made = f'torch {torch.__version__}, torchvision {torchvision.__version__}, make-case.py'
    write_safetensors(os.path.join(a.out, 'weights.safetensors'), state, {
        'format': 'pt', 'layout': 'torchvision ResNet state_dict, conv weights OIHW', 'arch': a.arch,
        'seed': str(a.seed), 'made_with': made})
    case = {'input_nchw': x, 'labels': labels, **ref}
    write_safetensors(os.path.join(a.out, 'case.safetensors'), case, {
        'input_layout': 'NCHW float32',
        'loss': 'mean cross-entropy over batch, train-mode BatchNorm (batch statistics)',
        'grads': 'of loss_train w.r.t. parameters, torch layouts (OIHW)',
        'reference': 'float64 (PyTorch, from the float32 weights and input)',
        'arch': a.arch, 'size': str(a.size), 'batch': str(a.batch), 'classes': str(a.classes), 'seed': str(a.seed),
        'torch_fp32_rel_error': json.dumps(fp32_error), 'made_with': made})
    worst = max(fp32_error.items(), key=lambda kv: kv[1])
    print(f'make-case: {a.arch} {a.size}px batch {a.batch}, {len(names)} gradients -> {a.out} '
          f'({time.time() - started:.1f} s; torch fp32 worst {worst[0]} {worst[1]:.1e})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

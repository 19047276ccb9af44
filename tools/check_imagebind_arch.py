#!/usr/bin/env python3
"""Check tools/export_imagebind.py's ImageBind network against the upstream model code, without
the checkpoint: build upstream `imagebind_huge()` (random weights), require that its state dict
has exactly our keys and shapes, load it into our network with strict=True, and compare every
modality's output on random inputs (eval mode).

The upstream code is taken from an unpacked ImageBind source tree (`--upstream DIR`, the folder
that holds `imagebind/models/imagebind_model.py`), e.g. the PyPI sdist `imagebind-packaged`
(`pip download --no-deps imagebind-packaged==0.1.2`; its licence is CC BY-NC-SA 4.0, so it is
only downloaded for this check, never vendored). Its model modules need timm, einops, iopath,
ftfy and regex; the package's `__init__` (which pulls torchaudio, pytorchvideo ...) is bypassed.

Usage: python tools/check_imagebind_arch.py --upstream /tmp/imagebind-packaged-0.1.2
"""
import argparse
import os
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_imagebind as ours  # noqa: E402


def upstream_model(root):
    pkg = types.ModuleType("imagebind")
    pkg.__path__ = [os.path.join(root, "imagebind")]
    sys.modules["imagebind"] = pkg
    from imagebind.models import imagebind_model  # noqa: E402
    return imagebind_model.imagebind_huge(pretrained=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="unpacked ImageBind source tree")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    t0 = time.time()
    theirs = upstream_model(args.upstream).eval()
    sd = theirs.state_dict()
    mine = ours.ImageBind(ours.EXPORTABLE).eval()
    my_sd = mine.state_dict()
    missing = sorted(set(my_sd) - set(sd))
    extra = sorted(set(sd) - set(my_sd))
    shapes = [k for k in sd if k in my_sd and sd[k].shape != my_sd[k].shape]
    print(f"upstream: {len(sd)} tensors, {sum(v.numel() for v in sd.values()) / 1e6:.1f} M values;"
          f" ours: {len(my_sd)} tensors ({time.time() - t0:.0f} s to build both)")
    if missing or extra or shapes:
        sys.exit(f"state dicts differ:\n  only ours: {missing[:20]}\n  only upstream: {extra[:20]}"
                 f"\n  shape: {shapes[:20]}")
    mine.load_state_dict(sd, strict=True)
    print("strict load of the upstream state dict: ok (same keys, same shapes)")

    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for m in ["audio", "depth", "thermal", "imu", "text", "vision"]:
        x = ours.example_input(m, 2, 3, gen)
        with torch.no_grad():
            want = theirs({m: x})[m]
            got = mine.encode(m, x)
        diff = float((got - want).abs().max())
        worst = max(worst, diff)
        print(f"  {m:8s} max |ours - upstream| = {diff:.3g} (output norm "
              f"{float(want.norm(dim=-1).mean()):.3g})")
    if worst > args.tolerance:
        sys.exit(f"outputs differ by {worst:.3g} > {args.tolerance}")
    print("all modalities agree")


if __name__ == "__main__":
    main()

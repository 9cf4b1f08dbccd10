#!/usr/bin/env python3
"""Convert an official FQGAN checkpoint (.pt) into safetensors that fqgan loads.

The official training scripts save `torch.save({"model": state_dict, ...})` (tokenizers) or
`{"model" | "module" | "state_dict": ...}` (FAR generators). This script takes the state dict,
keeps the tensors under their original names (DDP `module.` and torch.compile `_orig_mod.`
prefixes removed), converts floating-point tensors to float32 and writes one safetensors file.
Nothing else is changed: fqgan reads the official key names directly.

Needs: python3 with `torch` and `safetensors` (pip install torch safetensors).

    python3 tools/convert_official.py fqgan_dual_ds16.pt fqgan_dual_ds16.safetensors
    # then embed the config, so later commands need no --preset:
    fqgan-trainer import fqgan_dual_ds16.safetensors --preset dual-ds16 --inference -o dual-ds16.safetensors
"""

import argparse
import os
import sys


def find_state_dict(checkpoint):
    """The state dict inside an official checkpoint, wherever the script put it."""
    if not isinstance(checkpoint, dict):
        sys.exit(f"error: expected a dict in the checkpoint, found {type(checkpoint).__name__}")
    for key in ("model", "module", "state_dict"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key], key
    return checkpoint, None


def clean_name(name):
    for prefix in ("module.", "_orig_mod."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="official .pt / .pth file")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--ema", action="store_true", help="take the 'ema' state dict when the checkpoint has one")
    args = parser.parse_args()

    import torch
    from safetensors.torch import save_file

    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # older checkpoints pickle argparse Namespaces next to the weights
        print(f"note: weights_only load failed ({err}); loading with full unpickling", file=sys.stderr)
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)

    if args.ema:
        if not isinstance(checkpoint.get("ema"), dict):
            sys.exit("error: --ema given but the checkpoint has no 'ema' state dict")
        state, where = checkpoint["ema"], "ema"
    else:
        state, where = find_state_dict(checkpoint)

    tensors = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        # clone: safetensors refuses tensors that share storage
        tensors[clean_name(name)] = value.contiguous().clone()

    metadata = {"source": os.path.basename(args.checkpoint), "state_dict": where or "<root>"}
    save_file(tensors, args.output, metadata=metadata)
    count = sum(t.numel() for t in tensors.values())
    print(f"wrote {args.output}: {len(tensors)} tensors, {count / 1e6:.1f}M values (from '{metadata['state_dict']}')")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side CPU benchmark: the official FQGAN PyTorch code and fqgan, same jobs, same threads.

    python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy einops
    git clone https://github.com/showlab/FQGAN /path/to/FQGAN      # read it, never commit it
    .venv/bin/python tools/bench-vs-official.py --ref /path/to/FQGAN --threads 2

Runs the official model classes with random weights (eval mode, no grad), then fqgan's
`cargo bench -p fqgan --bench jobs` with the same thread count, and prints one table:
time (or images/s) on both sides and fqgan's speed relative to PyTorch (above 1: fqgan is
faster). Medians of repeated runs, one warm-up run excluded, as the Rust bench does.

Jobs: dual-ds16 load / encode / decode at 256x256; small-dual-ds8 (official classes at the
preset's widths) encode / decode of 64x64 tiles, batch 1 and 16; FAR-B (dual) load and seconds
per token with CFG 2.0 at batch 1 and 8 (the difference of runs generating 4 and 20 tokens),
and the same with fqgan's bf16 weights against PyTorch's fp32 run, in rows of their own;
the small-dual-ds8 training step, batch 8 of 64x64: L2 + VQ / commitment / entropy losses +
disentanglement, AdamW. `--only` picks jobs by substring, `--markdown` prints the table for the
README, `--fqgan-json` reuses a JSON file written by the Rust bench instead of running it.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_secs(runs, fn):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Official:
    """The official modules, imported from a checkout of showlab/FQGAN."""

    def __init__(self, ref, threads):
        sys.path.insert(0, str(ref))
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        import tokenizer.vq_model_dual as vq

        self.vq = vq
        self.rows = {}

    def record(self, job, value):
        print(f"  {job:<48} {value:10.4f}", flush=True)
        self.rows[job] = value

    def small_ds8(self, **kwargs):
        """VQ_8 built from the official classes at small-dual-ds8's widths: ch 32, ch_mult
        [1, 1, 2, 2], z 32, adapters 64 wide with 2 layers and 4 heads over an 8x8 grid,
        codebooks 1024 x 8. The official file fixes ch, the adapter sizes and the 256-pixel
        grid in the constructors, so those are set here through its own classes."""
        vq, torch = self.vq, self.torch
        nn = torch.nn

        class SmallAdapter(vq.FactorizedAdapter):
            def __init__(self, down_factor):
                nn.Module.__init__(self)
                self.grid_size, self.width, self.num_layers, self.num_heads = 64 // down_factor, 64, 2, 4
                self.positional_embedding = nn.Parameter(self.width**-0.5 * torch.randn(self.grid_size**2, self.width))
                self.ln_pre = nn.LayerNorm(self.width)
                self.transformer = nn.ModuleList(
                    [vq.ResidualAttentionBlock(self.width, self.num_heads, mlp_ratio=4.0) for _ in range(self.num_layers)]
                )
                self.ln_post = nn.LayerNorm(self.width)

        saved = (vq.Encoder, vq.Decoder, vq.FactorizedAdapter)
        vq.Encoder = functools.partial(saved[0], ch=32)
        vq.Decoder = functools.partial(saved[1], ch=32)
        vq.FactorizedAdapter = SmallAdapter
        try:
            return vq.VQModel(
                vq.ModelArgs(
                    codebook_size=1024,
                    codebook_embed_dim=8,
                    encoder_ch_mult=[1, 1, 2, 2],
                    decoder_ch_mult=[1, 1, 2, 2],
                    z_channels=32,
                    **kwargs,
                )
            )
        finally:
            vq.Encoder, vq.Decoder, vq.FactorizedAdapter = saved

    def tokenizer_jobs(self, wants, scratch):
        torch = self.torch
        from safetensors.torch import load_file, save_file

        if wants("dual-ds16"):
            model = self.vq.VQ_16(codebook_size=16384, codebook_embed_dim=8).eval()
            path = scratch / "dual-ds16.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

            def load():
                fresh = self.vq.VQ_16(codebook_size=16384, codebook_embed_dim=8)
                fresh.load_state_dict(load_file(str(path)))

            self.record("dual-ds16 load (s)", median_secs(3, load))
            path.unlink()
            images = torch.rand(1, 3, 256, 256) * 2 - 1
            with torch.no_grad():
                quant_sem, quant_vis, _, _ = model.encode(images)
                quant = torch.cat([quant_vis, quant_sem], dim=1)
                self.record("dual-ds16 encode 256x256 (s)", median_secs(3, lambda: model.encode(images)))
                self.record("dual-ds16 decode 256x256 (s)", median_secs(3, lambda: model.decode(quant)))
        if wants("tile"):
            model = self.small_ds8().eval()
            with torch.no_grad():
                for batch in (1, 16):
                    images = torch.rand(batch, 3, 64, 64) * 2 - 1
                    quant_sem, quant_vis, _, _ = model.encode(images)
                    quant = torch.cat([quant_vis, quant_sem], dim=1)
                    runs = 21 if batch == 1 else 5
                    encode = median_secs(runs, lambda: model.encode(images))
                    self.record(f"small-dual-ds8 tile encode, batch {batch} (s/tile)", encode / batch)
                    decode = median_secs(runs, lambda: model.decode(quant))
                    self.record(f"small-dual-ds8 tile decode, batch {batch} (s/tile)", decode / batch)

    def far_jobs(self, wants, scratch):
        if not wants("far-b"):
            return
        torch = self.torch
        from safetensors.torch import load_file, save_file
        from autoregressive.models.far_dual import FAR_B
        from autoregressive.models.generate_dual import generate_fq

        model = FAR_B(vocab_size=16384, num_classes=1000, block_size=256).eval()
        path = scratch / "far-b.safetensors"
        state = {k: v.contiguous() for k, v in model.state_dict().items() if "freqs_cis" not in k}
        save_file(state, str(path))

        def load():
            fresh = FAR_B(vocab_size=16384, num_classes=1000, block_size=256)
            fresh.load_state_dict(load_file(str(path)), strict=False)

        self.record("far-b load (s)", median_secs(2, load))
        path.unlink()
        for batch in (1, 8):
            cond = torch.arange(batch)

            def until(steps):
                return lambda: generate_fq(
                    model, cond, steps, cfg_scale=[2.0, 2.0], temperature=[1.0, 1.0], top_k=[0, 0], top_p=[1.0, 1.0]
                )

            short, long = 4, 20
            with torch.no_grad():
                per_token = (median_secs(3, until(long)) - median_secs(3, until(short))) / (long - short)
            self.record(f"far-b sampling cfg 2.0, batch {batch} (s/token)", per_token)

    def training_jobs(self, wants):
        if not wants("train"):
            return
        torch = self.torch
        model = self.small_ds8(entropy_loss_ratio=0.03, with_disentanglement=True, disentanglement_ratio=0.1).train()
        # The usage window is registered as a Parameter that requires grad, and the official
        # forward writes it in place; as a plain buffer (as in fqgan) the training step runs.
        for module in model.modules():
            if hasattr(module, "codebook_used"):
                module.codebook_used.requires_grad_(False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)
        images = torch.rand(8, 3, 64, 64) * 2 - 1

        def step():
            dec, loss_sem, loss_vis, disentangle, _ = model(images)
            loss = torch.mean((dec - images) ** 2) + disentangle
            for vq_loss, commit, entropy, _ in (loss_sem, loss_vis):
                loss = loss + vq_loss + commit + entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        self.record("small-dual-ds8 train step, batch 8 64x64 (img/s)", 8 / median_secs(5, step))


def run_fqgan(threads, only):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fqgan.json"
        command = ["cargo", "bench", "-q", "-p", "fqgan", "--bench", "jobs", "--", "--threads", str(threads)]
        command += ["--json", str(out)] + (["--only", ",".join(only)] if only else [])
        subprocess.run(command, cwd=REPO, check=True)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="checkout of github.com/showlab/FQGAN")
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    parser.add_argument("--only", default="", help="comma-separated job substrings, e.g. far-b,tile")
    parser.add_argument("--fqgan-json", type=Path, help="use this output of the Rust bench instead of running it")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    only = [o for o in args.only.split(",") if o]
    wants = lambda job: not only or any(o in job for o in only)

    print(f"official PyTorch code, {args.threads} thread(s)")
    official = Official(args.ref, args.threads)
    print(f"  torch {official.torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        official.tokenizer_jobs(wants, Path(scratch))
        official.far_jobs(wants, Path(scratch))
    official.training_jobs(wants)

    print(f"fqgan, {args.threads} thread(s)")
    fqgan = json.loads(args.fqgan_json.read_text()) if args.fqgan_json else run_fqgan(args.threads, only)
    ours = {row["job"]: row for row in fqgan["rows"]}

    header = ("job", "PyTorch", "fqgan", "fqgan speed / PyTorch")
    lines = []

    def compare(job, theirs, row):
        # Seconds: speed is the inverse of time. Images per second: speed itself.
        ratio = row["value"] / theirs if row["unit"] == "img/s" else theirs / row["value"]
        lines.append((job, f"{theirs:.4g}", f"{row['value']:.4g}", f"{ratio:.2f}x"))

    for job, theirs in official.rows.items():
        if job in ours:
            compare(job, theirs, ours[job])
    # Reduced-precision rows, reported apart: fqgan's bf16 weights against PyTorch's fp32 run.
    for job, row in ours.items():
        theirs = official.rows.get(job.replace(" bf16", ""))
        if " bf16" in job and theirs is not None:
            compare(job + ", vs PyTorch fp32", theirs, row)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("| --- | ---: | ---: | ---: |")
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(4)]
        for line in [header] + lines:
            print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))))


if __name__ == "__main__":
    main()

"""Time one UNet step of full-size SD 1.5 and SDXL UNets on a GPU (random weights, fp16).

The cost of a UNet step does not depend on the values of its weights, so a UNet built from the
published architecture (diffusers' UNet2DConditionModel, the configs below) with random weights
times the same as the real checkpoint. One step is what a sampler pays per step with classifier-
free guidance: one call on a batch of 2 (the negative and the positive prompt) at the image's
latent size, 77 text tokens.

Prints one JSON line per model: {"model", "params", "latent", "batch", "dtype", "runs", "device",
and the mean and min ms per step of each mode: eager (PyTorch launching every kernel) and, on a
GPU, one captured CUDA graph per step}.
Example (needs torch with CUDA and diffusers): python tools/bench/unet_step_gpu.py --runs 30
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from diffusers import UNet2DConditionModel

# SD 1.5's UNet (runwayml/stable-diffusion-v1-5, unet/config.json): diffusers' defaults with a
# 768-wide text embedding.
SD15 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
)

# SDXL base 1.0's UNet (stabilityai/stable-diffusion-xl-base-1.0, unet/config.json).
SDXL = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


def time_unet(name: str, config: dict, runs: int, warmup: int, device: str, dtype: torch.dtype, graph: bool) -> dict:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in unet.parameters())
    side = config["sample_size"]
    batch = 2
    sample = torch.randn(batch, 4, side, side, device=device, dtype=dtype)
    text = torch.randn(batch, 77, config["cross_attention_dim"], device=device, dtype=dtype)
    t = torch.tensor([500] * batch, device=device)
    extra = {}
    if config.get("addition_embed_type") == "text_time":
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, 1280, device=device, dtype=dtype),
            "time_ids": torch.tensor([[side * 8, side * 8, 0, 0, side * 8, side * 8]] * batch, device=device, dtype=dtype),
        }
    def step():
        return unet(sample, t, encoder_hidden_states=text, **extra).sample

    def timed(call) -> list[float]:
        times = []
        for i in range(warmup + runs):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = call()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
        assert out.shape == sample.shape and torch.isfinite(out).all(), f"{name}: bad output"
        return times

    with torch.inference_mode():
        times = {"eager": timed(step)}
        if device == "cuda" and graph:
            # One captured CUDA graph per step: what a serving stack pays without Python's kernel
            # launches (the figure to set a preview against, as the smaller step).
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(stream)
            g = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(g):
                    static_out = step()
            except RuntimeError as e:
                print(f"{name}: no CUDA graph ({e})", file=sys.stderr)
            else:

                def replay():
                    g.replay()
                    return static_out

                times["cuda_graph"] = timed(replay)
    del unet
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "model": name,
        "params": params,
        "latent": f"{side}x{side}",
        "batch": batch,
        "dtype": str(dtype).removeprefix("torch."),
        **{f"{mode}_ms_per_step_mean": round(sum(ts) / len(ts), 3) for mode, ts in times.items()},
        **{f"{mode}_ms_per_step_min": round(min(ts), 3) for mode, ts in times.items()},
        "runs": runs,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    ap.add_argument("--models", default="sd15,sdxl")
    ap.add_argument("--no-cuda-graph", action="store_true", help="time eager steps only")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    configs = {"sd15": SD15, "sdxl": SDXL}
    for name in args.models.split(","):
        print(json.dumps(time_unet(name, configs[name], args.runs, args.warmup, device, dtype, not args.no_cuda_graph)), flush=True)


if __name__ == "__main__":
    main()

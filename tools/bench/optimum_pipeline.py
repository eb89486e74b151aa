"""Time Hugging Face Optimum's ONNX Runtime Stable Diffusion pipeline on an Optimum-layout model dir.

Prints one JSON line: {"runs", "wall_s_per_image_mean", "wall_s_per_image_min", "all": [...], ...}.
Example: python tools/bench/optimum_pipeline.py --model-dir tests/fixtures/models/tiny-sd15 --runs 5
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnxruntime as ort
import torch
from optimum.onnxruntime import ORTDiffusionPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from samplers import SAMPLERS, scheduler_for  # noqa: E402  (tools/fixtures/samplers.py)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    ap.add_argument("--negative-prompt", default=None)
    ap.add_argument("--width", type=int, default=None, help="default: the model's native size")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--sampler", default="Euler", help=f"one of {list(SAMPLERS)}, optionally + ' Karras'")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--num-images", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--provider", default="CPUExecutionProvider")
    a = ap.parse_args()

    opts = ort.SessionOptions()
    if a.threads:
        opts.intra_op_num_threads = a.threads
    pipe = ORTDiffusionPipeline.from_pretrained(a.model_dir, provider=a.provider, session_options=opts)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = scheduler_for(a.sampler, pipe.scheduler.config)

    def once() -> float:
        gens = [torch.Generator("cpu").manual_seed(a.seed + i) for i in range(a.num_images)]
        t0 = time.perf_counter()
        pipe(a.prompt, negative_prompt=a.negative_prompt, width=a.width, height=a.height,
             num_inference_steps=a.steps, guidance_scale=a.guidance, num_images_per_prompt=a.num_images,
             generator=gens, output_type="pil")
        return (time.perf_counter() - t0) / a.num_images

    for _ in range(a.warmup):
        once()
    times = [once() for _ in range(a.runs)]
    print(json.dumps({"runs": a.runs, "wall_s_per_image_mean": sum(times) / len(times),
                      "wall_s_per_image_min": min(times), "all": times, "pipeline": type(pipe).__name__,
                      "sampler": a.sampler, "steps": a.steps, "num_images": a.num_images,
                      "onnxruntime": ort.__version__, "provider": a.provider}))


if __name__ == "__main__":
    main()

"""Throughput of the default embedder: bare forward pass vs the full embedder, side by side.

For each torch thread count and batch size, on decoded 480x270 RGB frames:

(a) forward  -- the default network alone on pre-made input tensors (exactly the normalised
               tensors the embedder would feed it, already on the device);
(b) embedder -- ``Embedder.embed(frames)``: resize + normalise + forward + copy back to numpy.

The two are timed alternately (``--repeats`` rounds of about ``--seconds`` each) so that load
from other processes hits both alike; the best round of each is reported (the usual choice on
a shared machine), with the median in brackets. Target: embedder >= 80% of forward.

The device is chosen as the daemon would (``device="auto"``: CUDA when present, fp16 there).

    python benchmarks/embed_throughput.py                 # batch 1, 16, 64; threads 1, 2
    python benchmarks/embed_throughput.py --seconds 2 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np
import torch

from monitor.pipeline.embed import build_embedder


def make_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """``n`` distinct decoded RGB frames: crops of scikit-image photographs (random images if
    scikit-image is missing), JPEG-encoded and decoded like camera frames."""
    rng = np.random.default_rng(0)
    try:
        import skimage.data

        photos = [
            skimage.data.astronaut(),
            skimage.data.coffee(),
            skimage.data.chelsea(),
            skimage.data.rocket(),
        ]
    except ImportError:
        photos = [rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)]
    frames = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        frame = cv2.resize(
            photo[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_AREA
        )
        ok, encoded = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        frames.append(np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]))
    return frames


def rate(fn, n_images: int, seconds: float, sync) -> float:
    """Images per second of ``fn`` over at least ``seconds`` (at least 2 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        sync()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            return calls * n_images / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--frame-size", default="480x270", help="WIDTHxHEIGHT of the decoded frames"
    )
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.frame_size.split("x"))
    frames = make_frames(max(args.batch_sizes), width, height)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"cv2 {cv2.__version__}"
    )
    print(
        f"machine {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    header = (
        f"{'threads':>7} {'batch':>5} {'forward img/s':>20} {'embedder img/s':>20} {'ratio':>6}"
    )
    for threads in args.threads:
        cv2.setNumThreads(threads)  # cv2 is process-wide too; keep it within the same budget
        embedder = build_embedder("default", threads=threads, device=args.device)
        on_cuda = embedder.device.startswith("cuda")
        sync = torch.cuda.synchronize if on_cuda else (lambda: None)
        if threads == args.threads[0]:
            fp16 = next(embedder.module.parameters()).dtype == torch.float16
            name = (
                torch.cuda.get_device_name(embedder.device)
                if on_cuda
                else platform.processor() or "cpu"
            )
            print(
                f"device {embedder.device} ({name}), fp16 {fp16}, embedder "
                f"{embedder.identity.label}, input "
                f"{embedder.identity.input_size}x{embedder.identity.input_size}, frames "
                f"{width}x{height}"
            )
            print(header)
        for n in args.batch_sizes:
            batch = frames[:n]
            x = embedder.preprocess(batch)  # pre-made, on the device, exactly what embed() feeds

            def forward(embedder=embedder, x=x) -> None:
                with torch.inference_mode():
                    embedder.module(x)

            def full(embedder=embedder, batch=batch) -> None:
                embedder.embed(batch)

            forward(), full()  # warm-up
            fwd, emb = [], []
            for _ in range(args.repeats):
                fwd.append(rate(forward, n, args.seconds, sync))
                emb.append(rate(full, n, args.seconds, sync))
            ratio = max(emb) / max(fwd)
            print(
                f"{threads:>7} {n:>5} {max(fwd):>9.0f} ({statistics.median(fwd):>7.0f}) "
                f"{max(emb):>9.0f} ({statistics.median(emb):>7.0f}) {ratio:>6.2f}",
                flush=True,
            )
    print(
        f"load average {os.getloadavg()[0]:.2f} at end; best round (median) of {args.repeats} x "
        f"{args.seconds:g} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

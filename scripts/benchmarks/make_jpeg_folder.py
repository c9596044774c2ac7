"""Write an ImageFolder of ImageNet-like JPEGs (sizes around 500x375, about 80-110 KB each) for
benchmarking input pipelines where ImageNet itself is not at hand.

    python scripts/benchmarks/make_jpeg_folder.py /tmp/jpegs --classes 100 --per-class 100
    python scripts/benchmarks/benchmark.py --data /tmp/jpegs --archs eca_resnet50 --settings official,compiled_fused

The content is synthetic (gradients, shapes and sensor-like noise), tuned so that the files' size, and
therefore their decoding cost, resembles ImageNet's; the labels carry no meaning. Prints the mean file
size so the resemblance can be checked.
"""
import argparse
import os
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw

SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (640, 480), (500, 500))


def make_image(path: str, seed: int) -> int:
    rng = np.random.default_rng(seed)
    width, height = SIZES[seed % len(SIZES)]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    colours = rng.uniform(0, 255, (2, 3))
    mix = (x / width * np.cos(seed) + y / height * np.sin(seed)) % 1.0
    pixels = colours[0] * mix[..., None] + colours[1] * (1 - mix[..., None])
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        box = (x0, y0, x0 + rng.integers(20, 200), y0 + rng.integers(20, 200))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 14, (height, width, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return os.path.getsize(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to create; train/ and val/ go under it")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    jobs = []
    for split, count in (("train", args.per_class), ("val", args.val_per_class)):
        for c in range(args.classes):
            folder = os.path.join(args.out, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            jobs += [(os.path.join(folder, f"{split}_{c}_{i}.JPEG"), len(jobs) + i) for i in range(count)]
    with Pool(args.workers) as pool:
        sizes = pool.starmap(make_image, jobs, chunksize=16)
    print(f"{len(sizes)} images in {args.out}, mean {np.mean(sizes) / 1024:.0f} KiB, "
          f"min {min(sizes) / 1024:.0f} KiB, max {max(sizes) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

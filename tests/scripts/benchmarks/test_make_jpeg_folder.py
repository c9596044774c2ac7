"""scripts/benchmarks/make_jpeg_folder.py: an ImageFolder of ImageNet-sized, reproducible JPEGs."""
import os

from PIL import Image

from scripts.benchmarks import make_jpeg_folder
from utils.data.dataset_checks import check_dataset


def test_images_are_imagenet_sized_and_reproducible(tmp_path):
    a, b = tmp_path / "a.JPEG", tmp_path / "b.JPEG"
    size = make_jpeg_folder.make_image(str(a), 3)
    assert size == os.path.getsize(a) > 20_000
    make_jpeg_folder.make_image(str(b), 3)
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as image:
        assert image.format == "JPEG" and image.size == make_jpeg_folder.SIZES[3 % len(make_jpeg_folder.SIZES)]


def test_the_folder_is_a_dataset_the_checks_accept(tmp_path, capsys):
    out = tmp_path / "jpegs"
    assert make_jpeg_folder.main([str(out), "--classes", "2", "--per-class", "2", "--val-per-class", "1",
                                  "--workers", "1"]) == 0
    classes, train_images = check_dataset(str(out), need_train=True)
    assert classes == ["n00000000", "n00000001"] and train_images == 4
    assert capsys.readouterr().out.startswith(f"6 images in {out}, mean ")
    files = sorted(os.listdir(out / "train" / "n00000000"))
    assert files == ["train_0_0.JPEG", "train_0_1.JPEG"]
    sizes = {Image.open(out / split / c / f).size for split in ("train", "val")
             for c in os.listdir(out / split) for f in os.listdir(out / split / c)}
    assert len(sizes) > 1  # several aspect ratios, as ImageNet's

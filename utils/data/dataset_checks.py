"""Checks on a dataset folder that run before any training, each failing with the fix in one line."""
import os
from dataclasses import dataclass
from typing import List, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import UserError
from .listing import is_image_file, list_split


class DatasetError(UserError):
    """A dataset folder that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class SplitInfo:
    classes: List[str]
    images: int


def _examples(paths: List[str]) -> str:
    return ", ".join(paths[:3])


def check_split(root: str, split: str) -> SplitInfo:
    """Validate DATA/<split> as an ImageFolder tree, from the listing the loaders use; return its class names
    and image count."""
    path = os.path.join(root, split)
    if os.path.exists(path) and not os.path.isdir(path):
        raise DatasetError(f"{path} is a file, not a folder: DATA must hold '{split}/' with one sub-folder per class")
    if not os.path.isdir(path):
        raise DatasetError(f"{path} is missing: DATA must hold '{split}/' with one sub-folder per class "
                           "(see scripts/prepare_imagenet.py)")
    try:
        listing = list_split(path)
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.strerror or exc}): check its permissions") from None
    loose = [e.name for e in os.scandir(path) if e.is_file() and is_image_file(e.name)]
    if loose and not listing.classes:
        raise DatasetError(
            f"{path} holds {len(loose)} images but no class folders: ImageNet's val archive extracts flat; "
            f"sort it with 'python scripts/prepare_imagenet.py --fix-flat-val {path} --devkit "
            "ILSVRC2012_devkit_t12.tar.gz'")
    if not listing.classes:
        raise DatasetError(f"{path} has no class folders: put each class's images in {path}/<class name>/")
    if listing.loops:
        raise DatasetError(f"{len(listing.loops)} links in {path} lead back into the dataset (e.g. "
                           f"{_examples(listing.loops)}): their images would be read again, under another class; "
                           "remove the links")
    if listing.specials:
        raise DatasetError(f"{len(listing.specials)} entries in {path} are neither files nor folders (e.g. "
                           f"{_examples(listing.specials)}: a FIFO, a socket, a dangling link or a link loop): "
                           "reading them would block or fail; remove them")
    if listing.strangers:
        raise DatasetError(f"{len(listing.strangers)} files in {path} are not images (e.g. "
                           f"{_examples(listing.strangers)}): they would be ignored silently; move them out of the "
                           "class folders")
    if listing.empty:
        raise DatasetError(f"{len(listing.empty)} class folders in {path} hold no images (e.g. "
                           f"{_examples(listing.empty)}): remove them or add images (extensions: "
                           f"{', '.join(IMG_EXTENSIONS)})")
    return SplitInfo(listing.classes, len(listing.samples))


def check_dataset(root: str, need_train: bool) -> Tuple[List[str], int]:
    """Validate DATA before training (train/ and val/, same classes) or evaluation (val/ only); return the
    class names and the number of training images (0 for evaluation)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise DatasetError(f"DIR {root} is a file, not a folder: give the folder that holds train/ and val/")
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root} does not exist: give the folder that holds train/ and val/")
    val = check_split(root, "val")
    val_classes = val.classes
    train_images = 0
    if need_train:
        train = check_split(root, "train")
        train_classes, train_images = train.classes, train.images
        if train_classes != val_classes:
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            raise DatasetError(
                f"train/ and val/ in {root} have different classes (only in train: {only_train[:3]}, only in "
                f"val: {only_val[:3]}): class indices would not agree; make both hold the same class folders")
    return val_classes, train_images

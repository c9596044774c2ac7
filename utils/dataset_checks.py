"""Checks on a dataset folder that run before any training, each failing with the fix in one line."""
import os
from dataclasses import dataclass
from typing import List, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS

from .data.common import is_class_folder, is_image_file
from .errors import UserError


class DatasetError(UserError):
    """A dataset folder that cannot be used; the message says what to do."""


def _class_dirs(root: str) -> List[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and is_class_folder(e.name))


def _image_files(folder: str) -> List[str]:
    return [e.name for e in os.scandir(folder) if e.is_file() and is_image_file(e.name)]


@dataclass(frozen=True)
class SplitInfo:
    classes: List[str]
    images: int


def check_split(root: str, split: str) -> SplitInfo:
    """Validate DATA/<split> as an ImageFolder tree; return its class names and image count."""
    path = os.path.join(root, split)
    if os.path.exists(path) and not os.path.isdir(path):
        raise DatasetError(f"{path} is a file, not a folder: DATA must hold '{split}/' with one sub-folder per class")
    if not os.path.isdir(path):
        raise DatasetError(f"{path} is missing: DATA must hold '{split}/' with one sub-folder per class "
                           "(see scripts/prepare_imagenet.py)")
    classes = _class_dirs(path)
    loose = _image_files(path)
    if loose and not classes:
        raise DatasetError(
            f"{path} holds {len(loose)} images but no class folders: ImageNet's val archive extracts flat; "
            f"sort it with 'python scripts/prepare_imagenet.py --fix-flat-val {path} --devkit "
            "ILSVRC2012_devkit_t12.tar.gz'")
    if not classes:
        raise DatasetError(f"{path} has no class folders: put each class's images in {path}/<class name>/")
    empty, strangers, count = [], [], 0
    for c in classes:
        folder = os.path.join(path, c)
        files = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
        images = [f for f in files if is_image_file(f)]
        strangers += [os.path.join(c, f) for f in files if not is_image_file(f)]
        count += len(images)
        if not images:
            empty.append(c)
    if strangers:
        raise DatasetError(f"{len(strangers)} files in {path} are not images (e.g. {', '.join(strangers[:3])}): "
                           f"they would be ignored silently; move them out of the class folders")
    if empty:
        raise DatasetError(f"{len(empty)} class folders in {path} hold no images (e.g. {', '.join(empty[:3])}): "
                           f"remove them or add images (extensions: {', '.join(IMG_EXTENSIONS)})")
    return SplitInfo(classes, count)


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

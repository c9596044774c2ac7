"""What a dataset split is: the one listing of an ImageFolder tree that both the checks before any work
(dataset_checks.py) and the loaders (common.ImageFolder) use, so what is trained is what was checked.

A split holds one folder per class (hidden names are neither classes nor images; a class folder may be a
symbolic link). A class's images are the image files anywhere below its folder, hidden folders left out, in
the order torchvision's ImageFolder lists them (by folder, then by name). What would make the loader read
something other than the class's images is recorded, not followed: a link back into the dataset (to the
split, to a class, to a folder already listed: torchvision would walk the tree again and label other
classes' images as this one) or a link loop, and anything with a file's name that is no regular file (a
FIFO named x.jpg blocks the reader forever, a dangling link fails).
"""
import os
from dataclasses import dataclass, field
from typing import List, Set, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS


def is_image_file(path: str) -> bool:
    """The one rule for what an image file is, used by the dataset checks and the loaders alike: an image
    extension, and not hidden (which also excludes macOS AppleDouble files, `._name.JPEG`)."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def is_class_folder(name: str) -> bool:
    return not name.startswith(".")


@dataclass
class SplitListing:
    root: str
    classes: List[str] = field(default_factory=list)
    samples: List[Tuple[str, int]] = field(default_factory=list)  # (path, class index)
    strangers: List[str] = field(default_factory=list)  # regular files that are not images (relative paths)
    specials: List[str] = field(default_factory=list)   # neither a regular file nor a folder (FIFO, dangling link)
    loops: List[str] = field(default_factory=list)      # links to a folder of the dataset already listed
    empty: List[str] = field(default_factory=list)      # classes without images


def _identity(path: str) -> Tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _kind(entry: os.DirEntry) -> str:
    """dir, file or special (also for entries whose target cannot be reached: loops, dangling links)."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError:
        pass
    return "special"


def list_split(root: str) -> SplitListing:
    """The listing of `root` (e.g. DATA/train); see the module docstring."""
    listing = SplitListing(root)
    listing.classes = sorted(e.name for e in os.scandir(root) if is_class_folder(e.name) and _kind(e) == "dir")
    seen: Set[Tuple[int, int]] = {_identity(root)}
    seen.update(_identity(os.path.join(root, name)) for name in listing.classes)
    for index, name in enumerate(listing.classes):
        images = _list_class(listing, os.path.join(root, name), seen)
        if not images:
            listing.empty.append(name)
        listing.samples += [(path, index) for path in sorted(images, key=lambda p: (os.path.dirname(p), p))]
    return listing


def _list_class(listing: SplitListing, folder: str, seen: Set[Tuple[int, int]]) -> List[str]:
    images, pending = [], [folder]
    while pending:
        current = pending.pop()
        for entry in sorted(os.scandir(current), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            relative = os.path.relpath(entry.path, listing.root)
            kind = _kind(entry)
            if kind == "dir":
                identity = _identity(entry.path)
                if identity in seen:
                    listing.loops.append(relative)
                    continue
                seen.add(identity)
                pending.append(entry.path)
            elif kind == "file" and is_image_file(entry.name):
                images.append(entry.path)
            elif kind == "file":
                listing.strangers.append(relative)
            else:
                listing.specials.append(relative)
    return images

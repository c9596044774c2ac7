"""Build the ImageFolder layout that main.py trains on from the official ILSVRC2012 archives.

Result: OUT/train/<wnid>/*.JPEG and OUT/val/<wnid>/*.JPEG (1,281,167 train and 50,000 val images
in 1000 classes). The labels come from the devkit, parsed by torchvision's own ImageNet code
(torchvision.datasets.imagenet.parse_devkit_archive / load_meta_file); nothing is hard-coded here.

Usage:
    # ARCHIVES holds ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz
    python scripts/prepare_imagenet.py --archives ARCHIVES --out DATA [--split train|val|all]

    # Sort an already-extracted, flat val folder (ILSVRC2012_val_XXXXXXXX.JPEG) into class folders
    python scripts/prepare_imagenet.py --fix-flat-val DATA/val --devkit ILSVRC2012_devkit_t12.tar.gz

The archives come from https://image-net.org/challenges/LSVRC/2012/2012-downloads.php (login needed).

Both modes are resumable: re-run the same command after an interruption and finished work is
skipped (a marker per finished train class under OUT/.prepare_imagenet/, every image written under
a temporary name and renamed when complete). At the end the image and class counts are checked
(--expect-train/--expect-val/--expect-classes change the expected numbers); on a shortfall the
missing classes and files are listed on stdout and the run exits 1. Missing archives exit 2.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from torchvision.datasets import imagenet
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.config.parser import OneLineParser  # noqa: E402
from utils.errors import RunError, one_line  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import atomic_write, copy_file, remove_stale_temps, write_json  # noqa: E402

DOWNLOAD_HINT = ("download from https://image-net.org/challenges/LSVRC/2012/2012-downloads.php "
                 "(free account and login required)")
EXPECTED_TRAIN = 1_281_167
EXPECTED_VAL = 50_000
EXPECTED_CLASSES = 1000
# Markers and the parsed devkit live beside train/ and val/, never inside them: ImageFolder treats
# every sub-folder of a split (hidden ones included) as a class.
WORK_DIR = ".prepare_imagenet"
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
MAX_NAMED = 5  # how many class names the one-line error quotes; the full list goes to stdout


class PrepareError(RunError):
    """An expected failure: the message is printed as one line and the tool exits with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = self.exit_code = code


# ---------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------

def archive_name(kind: str) -> str:
    """Official file name of the 'train', 'val' or 'devkit' archive, as torchvision knows it."""
    return imagenet.ARCHIVE_META[kind][0]


def write_marker(path: str, data: dict) -> None:
    """Write a JSON marker atomically (utils/files.py): a marker that exists is whole."""
    write_json(path, data)


def read_marker(path: str) -> Optional[dict]:
    """The marker's data, or None when it is absent or unreadable (then the step is redone)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_image(name: str) -> bool:
    # The same rule ImageFolder uses, so the counts below are what training will see.
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def count_images(folder: str) -> int:
    if not os.path.isdir(folder):
        return 0
    return sum(1 for e in os.scandir(folder) if e.is_file() and is_image(e.name))


def count_split(split_dir: str) -> int:
    return sum(count_images(os.path.join(split_dir, c)) for c in class_folders(split_dir))


def class_folders(split_dir: str) -> List[str]:
    if not os.path.isdir(split_dir):
        return []
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir())


def member_basename(member: tarfile.TarInfo, archive: str) -> str:
    """The file name to write a tar member to. Only the base name is used, so a hostile or odd
    member path cannot escape the destination folder."""
    name = os.path.basename(member.name)
    if name in ("", ".", ".."):
        raise PrepareError(f"{archive} holds an unexpected entry {member.name!r}: is it the official archive?")
    return name


def copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    """Write one tar member to `dest` atomically (utils/files.py: a hidden temporary file, renamed when
    complete): a file that exists under its final name is whole, which is what lets a re-run skip it,
    and neither ImageFolder nor the dataset checks pick up the temporary name. The member is read first
    (images are small), so a damaged archive is reported as such, not as a failed write."""
    src = tar.extractfile(member)
    if src is None:
        raise PrepareError(f"cannot read {member.name!r} from {tar.name}")
    with src:
        data = src.read()
    if len(data) != member.size:  # a truncated archive must not leave a short image behind
        raise PrepareError(f"{tar.name} ended inside {member.name!r}: the download is truncated; re-download it")
    with atomic_write(dest) as out:
        out.write(data)


def progress_bar(items: Iterable, total: Optional[int], desc: str, unit: str, enabled: bool):
    return tqdm(items, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# Devkit: labels via torchvision's parser
# ---------------------------------------------------------------------------------------------

def parse_devkit(devkit: str, work_dir: str) -> Tuple[Dict[str, tuple], List[str]]:
    """(wnid -> class names, wnid of each val image in ILSVRC2012_val order), from the devkit.

    torchvision's parse_devkit_archive checks the archive's md5, reads data/meta.mat and the val
    ground truth, and writes meta.bin next to the archive. It is run on a copy in a scratch folder
    (the archive folder may be read-only) and meta.bin is renamed into work_dir only once written,
    so an interrupted parse never leaves a half-written meta.bin that later runs would trust."""
    meta = os.path.join(work_dir, imagenet.META_FILE)
    if not os.path.isfile(meta):
        created = not os.path.exists(work_dir)
        os.makedirs(work_dir, exist_ok=True)
        try:
            _parse_devkit_copy(devkit, meta, work_dir)
        except BaseException:
            if created and not os.listdir(work_dir):  # leave no empty work folder behind
                os.rmdir(work_dir)
            raise
    try:
        wnid_to_classes, val_wnids = imagenet.load_meta_file(work_dir)
    except Exception as e:  # a meta.bin we cannot read is rebuilt from the devkit next time
        os.unlink(meta)
        raise PrepareError(f"unreadable {meta} ({one_line(e)}); removed it, re-run to parse the devkit again")
    return wnid_to_classes, list(val_wnids)


def _parse_devkit_copy(devkit: str, meta: str, work_dir: str) -> None:
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".devkit-") as scratch:
        shutil.copyfile(devkit, os.path.join(scratch, archive_name("devkit")))
        try:
            imagenet.parse_devkit_archive(scratch)
        except ImportError as e:
            raise PrepareError(f"torchvision needs scipy to read the devkit ({e}): pip install scipy")
        except RuntimeError:
            # torchvision's own message ("not present ... or is corrupted", with advice about the scratch
            # folder it was given) means an md5 mismatch: say that, about the file the user gave.
            raise PrepareError(f"{devkit} is not the official {archive_name('devkit')} (its checksum differs: damaged "
                               f"or another file); {DOWNLOAD_HINT}") from None
        except (OSError, KeyError, ValueError, IndexError, tarfile.TarError) as e:
            raise PrepareError(f"cannot parse the devkit {devkit}: {one_line(e)}") from None
        copy_file(os.path.join(scratch, imagenet.META_FILE), meta)


def val_index(name: str) -> Optional[int]:
    """0-based position of an ILSVRC2012_val_XXXXXXXX.JPEG file in the ground truth, else None.

    torchvision pairs sorted(listdir) with the ground truth; for the official names that is the
    same as reading the number, and the number also works on a partly sorted folder."""
    match = VAL_NAME.match(name)
    return int(match.group(1)) - 1 if match else None


# ---------------------------------------------------------------------------------------------
# Train: a tar of one inner tar per class
# ---------------------------------------------------------------------------------------------

def class_is_done(marker_path: str, folder: str) -> bool:
    marker = read_marker(marker_path)
    return marker is not None and marker.get("images") == count_images(folder)


def extract_class(outer: tarfile.TarFile, member: tarfile.TarInfo, folder: str) -> int:
    """Extract one class's inner tar straight from the outer archive (no 138 GB intermediate copy,
    which torchvision's parse_train_archive would make); files already there are kept, temporary files
    of an interrupted run are removed."""
    os.makedirs(folder, exist_ok=True)
    remove_stale_temps(folder)
    inner_file = outer.extractfile(member)
    if inner_file is None:
        raise PrepareError(f"cannot read {member.name!r} from {outer.name}")
    images = 0
    with inner_file, tarfile.open(fileobj=inner_file, mode="r:") as inner:
        inner_label = f"{outer.name}:{member.name}"
        for item in inner:
            name = member_basename(item, inner_label) if item.isfile() else ""
            if not is_image(name):
                continue  # only images: anything else in a class folder trips the dataset checks
            dest = os.path.join(folder, name)
            if not os.path.exists(dest):
                copy_member(inner, item, dest)
            images += 1
    return images


def build_train(train_tar: str, out: str, work_dir: str, progress: bool) -> Dict[str, int]:
    """Extract every class of the train archive into out/train/<wnid>; returns wnid -> image count
    as read from the archive, for the final check."""
    split_dir = os.path.join(out, "train")
    marker_dir = os.path.join(work_dir, "train")
    per_class: Dict[str, int] = {}
    # Plain random-access mode: members we skip are seeked over, not read, so resuming is quick.
    with tarfile.open(train_tar, mode="r:") as outer:
        members = [m for m in outer.getmembers() if m.isfile()]
        for member in progress_bar(members, len(members), "train classes", "class", progress):
            name = member_basename(member, train_tar)
            if not name.endswith(".tar"):
                raise PrepareError(f"{train_tar} holds {member.name!r}, not a per-class .tar: "
                                   "is it the official ILSVRC2012_img_train.tar?")
            wnid = name[:-len(".tar")]
            folder = os.path.join(split_dir, wnid)
            marker_path = os.path.join(marker_dir, wnid + ".json")
            if not class_is_done(marker_path, folder):
                write_marker(marker_path, {"images": extract_class(outer, member, folder)})
            per_class[wnid] = read_marker(marker_path)["images"]
    return per_class


# ---------------------------------------------------------------------------------------------
# Val: one flat tar of ILSVRC2012_val_XXXXXXXX.JPEG
# ---------------------------------------------------------------------------------------------

def label_of(name: str, val_wnids: Sequence[str], source: str) -> str:
    index = val_index(name)
    if index is None or index >= len(val_wnids):
        raise PrepareError(f"{source} holds {name!r}, which has no label in the devkit's val ground truth: "
                           "are the val archive and the devkit both the official ILSVRC2012 ones?")
    return val_wnids[index]


def build_val(val_tar: str, out: str, work_dir: str, val_wnids: Sequence[str], progress: bool) -> None:
    """Extract the val archive into out/val/<wnid>/ using the devkit labels; images already there
    are skipped, and a marker lets a finished split be skipped without reading the archive."""
    split_dir = os.path.join(out, "val")
    marker_path = os.path.join(work_dir, "val.json")
    marker = read_marker(marker_path)
    if marker is not None and marker.get("images") == count_split(split_dir):
        return  # finished, and nothing deleted since
    for wnid in class_folders(split_dir):
        remove_stale_temps(os.path.join(split_dir, wnid))  # left by an interrupted run
    images = 0
    with tarfile.open(val_tar, mode="r:") as tar:
        for member in progress_bar(tar, len(val_wnids), "val images", "img", progress):
            if not member.isfile():
                continue
            name = member_basename(member, val_tar)
            folder = os.path.join(split_dir, label_of(name, val_wnids, val_tar))
            dest = os.path.join(folder, name)
            if not os.path.exists(dest):
                os.makedirs(folder, exist_ok=True)
                copy_member(tar, member, dest)
            images += 1
    write_marker(marker_path, {"images": images})


def sort_flat_val(val_dir: str, val_wnids: Sequence[str], progress: bool) -> None:
    """Move val_dir/ILSVRC2012_val_*.JPEG into val_dir/<wnid>/ in place. os.replace within one
    folder tree is atomic, so each image is either still flat or already moved: a re-run skips the
    moved ones and continues with the rest."""
    for index, wnid in enumerate(progress_bar(val_wnids, len(val_wnids), "sorting val", "img", progress)):
        name = f"ILSVRC2012_val_{index + 1:08d}.JPEG"
        src = os.path.join(val_dir, name)
        dest = os.path.join(val_dir, wnid, name)
        if os.path.exists(dest) or not os.path.exists(src):
            continue  # already moved, or missing (the final check reports it)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(src, dest)


# ---------------------------------------------------------------------------------------------
# Final check
# ---------------------------------------------------------------------------------------------

def find_shortfalls(split_dir: str, classes: Iterable[str],
                    expected_per_class: Dict[str, int]) -> List[Tuple[str, str]]:
    """(class, what is wrong) for each class that is missing, short of images, or not in the devkit.
    expected_per_class may be partial: a class without an entry is only checked for being there."""
    present = set(class_folders(split_dir))
    problems = []
    for wnid in sorted(classes):
        found = count_images(os.path.join(split_dir, wnid))
        wanted = expected_per_class.get(wnid)
        if found == 0:
            problems.append((wnid, "missing" + (f" ({wanted} images)" if wanted else "")))
        elif wanted is not None and found < wanted:
            problems.append((wnid, f"{found} of {wanted} images ({wanted - found} missing)"))
    problems += [(name, "not a devkit class") for name in sorted(present - set(classes))]
    return problems


def verify_split(split: str, split_dir: str, classes: Iterable[str], expected_per_class: Dict[str, int],
                 expect_images: int, expect_classes: int) -> str:
    """Check the image and class counts of a finished split. On a mismatch, list the problems on
    stdout and raise a one-line error; otherwise return a one-line summary."""
    counts = {c: count_images(os.path.join(split_dir, c)) for c in class_folders(split_dir)}
    images = sum(counts.values())
    filled = sum(1 for n in counts.values() if n > 0)
    flat = count_images(split_dir)
    problems = find_shortfalls(split_dir, classes, expected_per_class)
    if images == expect_images and filled == expect_classes and not problems and not flat:
        return f"{split}: {images:,} images in {filled:,} classes - OK"
    print(f"{split} check failed for {split_dir}:")
    for wnid, what in problems:
        print(f"  {wnid}: {what}")
    if flat:
        print(f"  {flat} images lie directly in {split_dir}, outside any class folder")
    named = [wnid for wnid, _ in problems]
    detail = f"; classes missing or short: {', '.join(named[:MAX_NAMED])}" if named else ""
    more = f" and {len(named) - MAX_NAMED} more" if len(named) > MAX_NAMED else ""
    loose = f"; {flat} images outside class folders" if flat else ""
    raise PrepareError(f"{split} has {images:,} of {expect_images:,} images ({expect_images - images:,} missing) "
                       f"in {filled:,} of {expect_classes:,} classes{detail}{more}{loose}; see the list on stdout, "
                       "re-run to resume or re-download the archive")


# ---------------------------------------------------------------------------------------------
# The two modes
# ---------------------------------------------------------------------------------------------

def require_files(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise PrepareError(f"missing {', '.join(missing)}: {DOWNLOAD_HINT}", code=2)


def read_archive(step, archive: str):
    """Run an extraction step, turning a damaged archive into a one-line error."""
    try:
        return step()
    except (tarfile.TarError, EOFError) as e:
        raise PrepareError(f"{archive} is damaged, truncated or not the official archive ({one_line(e)}); "
                           "re-download it. Images extracted so far are kept; re-run afterwards to resume")


def run_build(args: argparse.Namespace) -> None:
    splits = ["train", "val"] if args.split == "all" else [args.split]
    devkit = args.devkit or os.path.join(args.archives, archive_name("devkit"))
    tars = {split: os.path.join(args.archives, archive_name(split)) for split in splits}
    # The devkit is needed for train too: it is the list of classes the result is checked against.
    require_files(list(tars.values()) + [devkit])
    work_dir = os.path.join(args.out, WORK_DIR)
    wnid_to_classes, val_wnids = parse_devkit(devkit, work_dir)
    # Extract everything first, then check: a short train split should not hold up val.
    checks = []
    if "train" in tars:
        per_class = read_archive(lambda: build_train(tars["train"], args.out, work_dir, args.progress), tars["train"])
        checks.append(("train", per_class, args.expect_train))
    if "val" in tars:
        read_archive(lambda: build_val(tars["val"], args.out, work_dir, val_wnids, args.progress), tars["val"])
        checks.append(("val", Counter(val_wnids), args.expect_val))
    failures = []
    for split, per_class, expect_images in checks:
        try:
            print(verify_split(split, os.path.join(args.out, split), wnid_to_classes, per_class,
                               expect_images, args.expect_classes))
        except PrepareError as e:
            failures.append(str(e))
    if failures:
        raise PrepareError(" | ".join(failures))


def run_fix_flat_val(args: argparse.Namespace) -> None:
    if not os.path.isdir(args.fix_flat_val):
        raise PrepareError(f"{args.fix_flat_val} is not a folder: give the extracted val folder", code=2)
    if not args.devkit:
        raise PrepareError(f"--fix-flat-val needs --devkit PATH/{archive_name('devkit')} for the labels", code=2)
    require_files([args.devkit])
    # A scratch folder: anything left inside the val folder would be taken for a class.
    with tempfile.TemporaryDirectory(prefix="prepare-imagenet-") as scratch:
        wnid_to_classes, val_wnids = parse_devkit(args.devkit, scratch)
    sort_flat_val(args.fix_flat_val, val_wnids, args.progress)
    print(verify_split("val", args.fix_flat_val, wnid_to_classes, Counter(val_wnids),
                       args.expect_val, args.expect_classes))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archives", metavar="DIR", help="folder holding the official ILSVRC2012 archives")
    parser.add_argument("--out", metavar="DIR", help="dataset folder to build (gets train/ and val/)")
    parser.add_argument("--split", choices=["train", "val", "all"], default="all", help="what to build")
    parser.add_argument("--fix-flat-val", metavar="VALDIR",
                        help="instead of building: sort a flat, extracted val folder into class folders")
    parser.add_argument("--devkit", metavar="PATH", help=f"the {archive_name('devkit')} "
                        "(default with --archives: the one in that folder)")
    parser.add_argument("--expect-train", type=int, default=EXPECTED_TRAIN, metavar="N")
    parser.add_argument("--expect-val", type=int, default=EXPECTED_VAL, metavar="N")
    parser.add_argument("--expect-classes", type=int, default=EXPECTED_CLASSES, metavar="N")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    args = parser.parse_args(argv)
    if args.fix_flat_val and (args.archives or args.out):
        parser.error("--fix-flat-val works on its own; do not combine it with --archives/--out")
    if not args.fix_flat_val and not (args.archives and args.out):
        parser.error("give --archives DIR and --out DIR, or --fix-flat-val VALDIR --devkit PATH")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The tool; its errors take the project's one error path (utils/running/entry.py)."""
    args = parse_args(argv)
    try:
        if args.fix_flat_val:
            run_fix_flat_val(args)
        else:
            run_build(args)
    except OSError as e:  # disk full, permissions, ...: the OS message says which file
        raise PrepareError(f"{one_line(e)}; fix that and re-run to resume") from None
    except KeyboardInterrupt:
        raise PrepareError("interrupted; re-run the same command to resume", code=130) from None
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Build the ImageFolder tree main.py expects from the official ILSVRC2012 archives.

    python scripts/prepare_imagenet.py --archives DIR --out /data/ILSVRC2012
        DIR holds ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz
    python scripts/prepare_imagenet.py --fix-flat-val /data/ILSVRC2012/val --devkit ILSVRC2012_devkit_t12.tar.gz
        sorts an already-extracted flat val/ folder (50,000 files) into class folders, in place

Labels come from torchvision's own devkit parsing (torchvision.datasets.imagenet.parse_devkit_archive,
which needs scipy to read meta.mat); nothing here holds a label table. Every step is resumable: a
finished class folder carries a marker, a finished file is never rewritten, and a re-run skips both.
At the end the counts are checked (1,281,167 train / 50,000 val images, 1,000 classes).
"""
import argparse
import os
import re
import shutil
import sys
import tarfile
import tempfile
from typing import Dict, List, Tuple

from tqdm import tqdm

TRAIN_TAR, VAL_TAR, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
EXPECTED = {"train": 1_281_167, "val": 50_000, "classes": 1000}
DONE = ".complete"
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG$")


class PrepareError(RuntimeError):
    pass


def require(path: str) -> str:
    if not os.path.isfile(path):
        raise PrepareError(f"{path} is missing: download {os.path.basename(path)} from image-net.org "
                           "(login required) and place it there")
    return path


def read_devkit(devkit: str, work_dir: str) -> Tuple[Dict[str, tuple], List[str]]:
    """(wnid -> class names, wnid of each val image in file-number order), via torchvision."""
    from torchvision.datasets.imagenet import load_meta_file, parse_devkit_archive

    os.makedirs(work_dir, exist_ok=True)
    if not os.path.exists(os.path.join(work_dir, "meta.bin")):
        link = os.path.join(work_dir, os.path.basename(devkit))
        if not os.path.exists(link):
            os.symlink(os.path.abspath(devkit), link)
        try:
            parse_devkit_archive(work_dir, os.path.basename(devkit))
        except ImportError:
            raise PrepareError("reading the devkit needs scipy (torchvision uses it for meta.mat): "
                               "pip install scipy") from None
        except RuntimeError as exc:
            raise PrepareError(f"{devkit}: {exc}") from None
    return load_meta_file(work_dir)


def _safe_members(tar: tarfile.TarFile):
    """Regular files only, by base name: archive paths never escape the target folder."""
    for member in tar:
        if member.isfile():
            yield member, os.path.basename(member.name)


def _write_atomically(source, path: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)
    os.replace(tmp, path)


def extract_train(archive: str, out_dir: str) -> None:
    """Each inner <wnid>.tar becomes out_dir/<wnid>/, marked complete when all its files are written."""
    os.makedirs(out_dir, exist_ok=True)
    with tarfile.open(archive, "r|") as outer:
        for member in tqdm(outer, desc="train classes", unit="class", total=EXPECTED["classes"]):
            if not member.isfile() or not member.name.endswith(".tar"):
                continue
            wnid = os.path.basename(member.name)[:-4]
            folder = os.path.join(out_dir, wnid)
            if os.path.exists(os.path.join(folder, DONE)):
                continue  # finished in an earlier run; the stream still has to pass over its bytes
            os.makedirs(folder, exist_ok=True)
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for image, name in _safe_members(inner):
                    target = os.path.join(folder, name)
                    if not os.path.exists(target):
                        _write_atomically(inner.extractfile(image), target)
            open(os.path.join(folder, DONE), "w").close()


def val_wnid(name: str, val_wnids: List[str]) -> str:
    """Ground truth of a val file: its number indexes the devkit's list (the order torchvision uses)."""
    match = VAL_NAME.match(name)
    if not match or not 1 <= int(match.group(1)) <= len(val_wnids):
        raise PrepareError(f"unexpected file {name!r} in the validation set: expected ILSVRC2012_val_NNNNNNNN.JPEG "
                           f"numbered 1..{len(val_wnids)}")
    return val_wnids[int(match.group(1)) - 1]


def extract_val(archive: str, out_dir: str, val_wnids: List[str]) -> None:
    with tarfile.open(archive, "r|") as tar:
        for image, name in tqdm(_safe_members(tar), desc="val images", unit="img", total=len(val_wnids)):
            folder = os.path.join(out_dir, val_wnid(name, val_wnids))
            target = os.path.join(folder, name)
            if not os.path.exists(target):
                os.makedirs(folder, exist_ok=True)
                _write_atomically(tar.extractfile(image), target)


def fix_flat_val(val_dir: str, val_wnids: List[str]) -> int:
    """Move flat val files into class folders in place; files already moved are left alone."""
    if not os.path.isdir(val_dir):
        raise PrepareError(f"{val_dir} is not a folder: give the extracted val/ folder")
    flat = sorted(e.name for e in os.scandir(val_dir) if e.is_file() and e.name.endswith(".JPEG"))
    for name in tqdm(flat, desc="sorting val", unit="img"):
        folder = os.path.join(val_dir, val_wnid(name, val_wnids))
        os.makedirs(folder, exist_ok=True)
        os.replace(os.path.join(val_dir, name), os.path.join(folder, name))
    return len(flat)


def count_images(split_dir: str) -> Dict[str, int]:
    if not os.path.isdir(split_dir):
        return {}
    return {e.name: sum(1 for f in os.scandir(e.path) if f.is_file() and not f.name.startswith("."))
            for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")}


def verify(out: str, splits: List[str], wnids: List[str], expect: Dict[str, int]) -> List[str]:
    """Problems found in the built tree, each one line (empty when the counts match)."""
    problems = []
    for split in splits:
        counts = count_images(os.path.join(out, split))
        missing = sorted(set(wnids) - set(counts))
        empty = sorted(w for w, n in counts.items() if n == 0)
        total = sum(counts.values())
        if len(counts) != expect["classes"] or missing:
            problems.append(f"{split}: {len(counts)} class folders, expected {expect['classes']}"
                            + (f"; missing {len(missing)} (e.g. {', '.join(missing[:5])})" if missing else ""))
        if empty:
            problems.append(f"{split}: {len(empty)} empty class folders (e.g. {', '.join(empty[:5])})")
        if total != expect[split]:
            gap = expect[split] - total
            problems.append(f"{split}: {total:,} images, expected {expect[split]:,} "
                            f"({abs(gap):,} {'missing' if gap > 0 else 'extra'})")
    return problems


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archives", help="folder with the three official archives")
    p.add_argument("--out", help="where to build train/ and val/")
    p.add_argument("--split", choices=("train", "val", "all"), default="all")
    p.add_argument("--fix-flat-val", metavar="VALDIR", help="sort an extracted flat val folder in place")
    p.add_argument("--devkit", help=f"path of {DEVKIT} (default: in --archives)")
    p.add_argument("--expect-train", type=int, default=EXPECTED["train"])
    p.add_argument("--expect-val", type=int, default=EXPECTED["val"])
    p.add_argument("--expect-classes", type=int, default=EXPECTED["classes"])
    args = p.parse_args(argv)
    if not args.fix_flat_val and not (args.archives and args.out):
        p.error("give --archives DIR --out DIR, or --fix-flat-val VALDIR --devkit FILE")
    return args


def run(args) -> int:
    expect = {"train": args.expect_train, "val": args.expect_val, "classes": args.expect_classes}
    devkit = require(args.devkit or os.path.join(args.archives or "", DEVKIT))
    if args.fix_flat_val:
        work = os.path.join(os.path.dirname(os.path.abspath(args.fix_flat_val)), ".prepare")
        wnid_to_classes, val_wnids = read_devkit(devkit, work)
        moved = fix_flat_val(args.fix_flat_val, val_wnids)
        out, splits = os.path.dirname(os.path.abspath(args.fix_flat_val)), ["val"]
        print(f"=> moved {moved:,} files into class folders")
        if os.path.basename(os.path.normpath(args.fix_flat_val)) != "val":
            return 0  # counts are checked on a folder named val/ only
    else:
        splits = ["train", "val"] if args.split == "all" else [args.split]
        archives = {"train": require(os.path.join(args.archives, TRAIN_TAR)),
                    "val": require(os.path.join(args.archives, VAL_TAR))}
        wnid_to_classes, val_wnids = read_devkit(devkit, os.path.join(args.out, ".prepare"))
        out = args.out
        if "train" in splits:
            extract_train(archives["train"], os.path.join(out, "train"))
        if "val" in splits:
            extract_val(archives["val"], os.path.join(out, "val"), val_wnids)
    problems = verify(out, splits, sorted(wnid_to_classes), expect)
    if problems:
        raise PrepareError("counts differ: " + "; ".join(problems) + " (re-run to resume; check the archives)")
    print(f"=> {out}: " + ", ".join(f"{s} OK" for s in splits))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except PrepareError as exc:
        print(f"prepare_imagenet.py: error: {exc}", file=sys.stderr)
        return 2 if "is missing" in str(exc) else 1


if __name__ == "__main__":
    sys.exit(main())

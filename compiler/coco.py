"""Read and check COCO detection annotation files the way TAO RT-DETR will use them.

Pure: reads files (the JSON and, optionally, the images), never runs anything.

* `read_coco_summary` is the fast path for the compiler's checks (category ids vs
  `num_classes`, per-class counts).  It is cached per process on (path, size, mtime_ns), so a
  build that compiles many experiments parses each annotation file once.
* `check_coco` is the full dataset check of docs/tao-notes.md §5 (`taomake data check`).  Data
  problems come back as findings, never as exceptions; one pass over the records with dict/set
  lookups keeps it linear (100k annotations well under a second without opening images).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError

BBOX_TOLERANCE = 1.0  # px; exporters round boxes, TAO clamps them anyway (docs/tao-notes.md §5)
REQUIRED_LISTS = ("images", "annotations", "categories")

Report = Callable[..., None]  # err/warn(record, message, hint="", code="")


@dataclass(frozen=True)
class CocoSummary:
    """What the compiler needs to know about one annotation file (treat the dicts as read-only:
    instances are shared through the cache)."""

    categories: dict[int, str]
    category_ids_used: frozenset[int]
    n_images: int
    n_annotations: int
    annotations_per_category: dict[int, int]
    images_without_annotations: int
    first_use: dict[int, str] = field(default_factory=dict)  # category id -> first record


    @property
    def max_category_id(self) -> int | None:
        ids = self.category_ids_used | self.categories.keys()
        return max(ids) if ids else None


@dataclass(frozen=True)
class ClassMismatch:
    """How one file's category ids and names differ from the project's classes: the one rule
    behind the compiler's check (`checks.check_annotations`) and `taomake data check`."""

    undeclared: tuple[int, ...]  # ids the file lists or uses that are not project classes
    out_of_range: tuple[int, ...]  # ids outside [0, num_classes): TAO's matcher crashes
    renamed: dict[int, tuple[str, str]]  # id -> (name in the file, name in the project)
    absent: tuple[int, ...]  # project classes the file's categories do not list

    @property
    def ids(self) -> list[int]:
        """Every id with an error or a rename, in order."""
        return sorted({*self.undeclared, *self.out_of_range, *self.renamed})


def compare_classes(summary: CocoSummary, declared: dict[int, str] | None,
                    num_classes: int | None) -> ClassMismatch:
    """Compare a file's categories (listed and used) with the project's classes; `declared`
    None skips the name/id comparison, `num_classes` None the range check."""
    ids = sorted(summary.category_ids_used | summary.categories.keys())
    return ClassMismatch(
        undeclared=tuple(i for i in ids if declared is not None and i not in declared),
        out_of_range=tuple(i for i in ids if num_classes is not None
                           and not 0 <= i < num_classes),
        renamed={i: (summary.categories[i], declared[i]) for i in ids
                 if declared is not None and i in declared and summary.categories.get(i)
                 and summary.categories[i] != declared[i]},
        absent=tuple(i for i in sorted(declared or ()) if summary.categories
                     and i not in summary.categories))


@dataclass(frozen=True)
class Finding:
    """One problem in a data file: which file, which record, what, and how to fix it."""

    file: str
    record: str  # e.g. "annotations[12] (id 57)"; "" for the file as a whole
    message: str
    hint: str = ""
    code: str = ""  # stable short name ("bbox-outside", ...) for grouping and tests

    def __str__(self) -> str:
        where = f"{self.file}: {self.record}" if self.record else self.file
        return f"{where}: {self.message}" + (f"\n    fix: {self.hint}" if self.hint else "")


@dataclass
class CocoReport:
    file: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    summary: CocoSummary | None = None  # None when the file could not be read at all
    annotations_per_category: dict[int, int] = field(default_factory=dict)
    images_per_category: dict[int, int] = field(default_factory=dict)
    images_opened: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def render(self, limit_per_kind: int = 5) -> str:
        """Text for a terminal; at most `limit_per_kind` findings of each code are spelled out."""
        lines: list[str] = []
        for title, items in (("error", self.errors), ("warning", self.warnings)):
            shown: Counter[str] = Counter()
            total = Counter(f.code for f in items)
            for f in items:
                shown[f.code] += 1
                if shown[f.code] <= limit_per_kind:
                    lines.append(f"{title}: {f}")
                elif shown[f.code] == total[f.code]:
                    lines.append(f"{title}: ... and {total[f.code] - limit_per_kind} more "
                                 f"[{f.code}] in {f.file}")
        s = self.summary
        if s is not None:
            counts = ", ".join(f"{cid} {s.categories.get(cid, '?')}: {n}"
                               for cid, n in sorted(self.annotations_per_category.items()))
            lines.append(f"{self.file}: {s.n_images} images, {s.n_annotations} annotations"
                         f" ({counts or 'none'}), {s.images_without_annotations} images"
                         f" without annotations")
        return "\n".join(lines)


# --------------------------------------------------------------------------- summary (cached)

_CACHE: dict[str, tuple[int, int, CocoSummary]] = {}  # resolved path -> (size, mtime_ns, ...)


_NUMBER_TYPES = (int, float)  # exact types: JSON true/false (bool) must not pass as numbers


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    try:
        return type(v) in _NUMBER_TYPES and math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def _is_box(b: Any) -> bool:
    """4 finite numbers; one isfinite on the sum (inf/nan propagate) keeps the hot loop cheap."""
    if type(b) is not list or len(b) != 4:
        return False
    x, y, w, h = b
    try:
        return (type(x) in _NUMBER_TYPES and type(y) in _NUMBER_TYPES
                and type(w) in _NUMBER_TYPES and type(h) in _NUMBER_TYPES
                and math.isfinite(x + y + w + h))
    except OverflowError:
        return False


BOMS = ((b"\xef\xbb\xbf", "a UTF-8 byte-order mark"),
        (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
COCO_HINT = "point the dataset at a COCO detection JSON file"
SAVE_AS_UTF8 = ("re-save it as UTF-8 without a byte-order mark (e.g. python3 -c \"import json,"
                "sys; p=sys.argv[1]; d=json.load(open(p, encoding='utf-8-sig')); "
                "json.dump(d, open(p, 'w'))\" FILE)")


def _load(path: Path) -> tuple[Any, str | None, str]:
    """(document, None, "") or (None, what went wrong, how to fix it).

    Read the way pycocotools inside TAO reads it (`json.load(open(f))`: UTF-8 text), not the
    way `json.loads(bytes)` would (that guesses UTF-16/32 and skips a BOM, so such a file
    would pass here and fail inside TAO)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, "file not found", COCO_HINT
    except IsADirectoryError:
        return None, "is a directory, not a JSON file", COCO_HINT
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}", "check the file and its permissions"
    for bom, what in BOMS:
        if raw.startswith(bom):
            enc = f"starts with {what}" if what.startswith("a ") else f"is {what} text"
            return None, f"{enc}; TAO (pycocotools) reads UTF-8 only", SAVE_AS_UTF8
    if len(raw) >= 4 and b"\x00" in raw[:4]:
        return None, "is UTF-16 or UTF-32 text; TAO (pycocotools) reads UTF-8 only", \
            SAVE_AS_UTF8
    try:
        return json.loads(raw.decode("utf-8")), None, ""
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text ({e.reason} at byte {e.start}); TAO (pycocotools) " \
                     "reads UTF-8 only", SAVE_AS_UTF8.replace("utf-8-sig", "ENCODING")
    except json.JSONDecodeError as e:
        return None, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", \
            "fix the JSON syntax there (or export the file again)"
    except RecursionError:
        return None, "is nested too deeply to be a COCO file (it exhausts Python's JSON " \
                     "parser, which TAO uses too)", COCO_HINT


def _missing_lists(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return (f"top level is a JSON {type(doc).__name__}, not an object with "
                f"{', '.join(REQUIRED_LISTS)}")
    bad = [k for k in REQUIRED_LISTS if not isinstance(doc.get(k), list)]
    if bad:
        return "has no " + ", ".join(f"'{k}' list" for k in bad) + " (a COCO file needs all of " \
               + ", ".join(REQUIRED_LISTS) + ")"
    return None


def _summarize(doc: dict[str, Any]) -> CocoSummary:
    """Tolerant of malformed records (skips them): `check_coco` is where they get reported."""
    categories: dict[int, str] = {}
    for c in doc["categories"]:  # a repeated id is an error in check_coco; the first counts
        if isinstance(c, dict) and _is_int(c.get("id")) and c["id"] not in categories:
            categories[c["id"]] = c["name"] if isinstance(c.get("name"), str) else ""
    per_cat: Counter[int] = Counter()
    first_use: dict[int, str] = {}
    annotated: set[Any] = set()
    for i, a in enumerate(doc["annotations"]):
        if isinstance(a, dict):
            if _is_int(a.get("category_id")):
                cid = a["category_id"]
                if cid not in per_cat:
                    first_use[cid] = f"annotations[{i}] (id {a.get('id')})"
                per_cat[cid] += 1
            annotated.add(_key(a.get("image_id")))
    image_ids = {_key(im.get("id")) for im in doc["images"] if isinstance(im, dict)}
    return CocoSummary(
        categories=categories,
        category_ids_used=frozenset(per_cat),
        n_images=len(doc["images"]),
        n_annotations=len(doc["annotations"]),
        annotations_per_category=dict(sorted(per_cat.items())),
        images_without_annotations=len(image_ids - annotated),
        first_use=first_use,
    )


def _key(v: Any) -> Any:
    """Hashable form of an id (a list id would crash set/dict lookups)."""
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def read_coco_summary(path: Path) -> CocoSummary:
    """Summary of a COCO file; raises `DataError` naming the file when it is unusable."""
    path = Path(path)
    key = _stat_key(path)
    if key is not None:
        hit = _CACHE.get(key[0])
        if hit is not None and hit[:2] == key[1:]:
            return hit[2]
    doc, problem, hint = _load(path)
    if problem is None:
        problem, hint = _missing_lists(doc), COCO_HINT
    if problem is not None:
        raise DataError(f"{path}: COCO annotation file {problem}\n    fix: {hint}")
    summary = _summarize(doc)
    if key is not None:
        _CACHE[key[0]] = (key[1], key[2], summary)
    return summary


def clear_cache() -> None:
    _CACHE.clear()


# --------------------------------------------------------------------------- full check


def check_coco(path: Path, image_dir: Path | None, *, num_classes: int | None = None,
               declared: dict[int, str] | None = None, open_images: bool = True,
               decoder: Decoder | None = None, name: str | None = None,
               with_doc: Callable[[dict[str, list[Any]]], None] | None = None) -> CocoReport:
    """Check one COCO file (and its images under `image_dir`, if given) against TAO's needs.

    `declared` are the project's classes (id -> name), `num_classes` the model's
    `dataset.num_classes`.  Image files are only looked for when `image_dir` is given, and only
    decoded (every pixel, plus a size check) when `open_images` is true, by `decoder`
    (default: one after the other; `taomake data check` passes a parallel, cached one).
    `name`: what findings call the file (default: its path).  `with_doc` is given the parsed
    file's images, annotations and categories (so a caller reads a big file once).
    """
    path = Path(path)
    file = name or str(path)
    report = CocoReport(file=file)

    def err(record: str, message: str, hint: str = "", code: str = "") -> None:
        report.errors.append(Finding(file, record, message, hint, code))

    def warn(record: str, message: str, hint: str = "", code: str = "") -> None:
        report.warnings.append(Finding(file, record, message, hint, code))

    key = _stat_key(path)
    doc, problem, hint = _load(path)
    if problem is not None:
        err("", problem, hint, "unreadable")
        return report
    if not isinstance(doc, dict):
        err("", _missing_lists(doc) or "", "the file must be a COCO JSON object", "not-coco")
        return report
    for k in REQUIRED_LISTS:
        if not isinstance(doc.get(k), list):
            err("", f"has no '{k}' list" if k not in doc else f"'{k}' is not a list",
                f"TAO needs '{k}' in every COCO file (docs/tao-notes.md §5)", f"missing-{k}")
    # Check what is there; a missing list counts as empty so the rest still gets checked.
    norm = {k: doc[k] if isinstance(doc.get(k), list) else [] for k in REQUIRED_LISTS}
    images, annotations = norm["images"], norm["annotations"]
    if with_doc is not None:
        with_doc(norm)
    report.summary = _summarize(norm)
    if key is not None and not report.errors:
        _CACHE[key[0]] = (key[1], key[2], report.summary)  # warms read_coco_summary for free

    if isinstance(doc.get("images"), list) and not images:
        err("", "has no images (empty split)", "add images or drop this split", "no-images")
    if isinstance(doc.get("annotations"), list) and not annotations and images:
        err("", "has no annotations", "a detection split needs at least one box", "no-annotations")

    cat_records = _check_categories(norm["categories"], err)
    sizes, files = _check_images(images, err, warn)
    per_cat, cat_images = _check_annotations(annotations, sizes, cat_records, err, warn)
    _check_classes(report, cat_records, per_cat, bool(images), declared, num_classes, err,
                   warn)
    report.annotations_per_category = dict(sorted(per_cat.items()))
    report.images_per_category = dict(sorted(Counter(c for c, _ in cat_images).items()))

    if image_dir is not None:
        _check_image_files(Path(image_dir), files, open_images, report, err, decoder)
    return report


def _check_classes(report: CocoReport, cat_records: dict[int, str], per_cat: Counter[int],
                   has_images: bool, declared: dict[int, str] | None,
                   num_classes: int | None, err: Report, warn: Report) -> None:
    """The file's classes against the project's (`declared`) and the model's count."""
    mismatch = compare_classes(report.summary, declared, num_classes)
    for cid in mismatch.ids:  # located at the category record, else the first box using it
        _report_class_id(err, warn, cat_records.get(cid) or report.summary.first_use[cid], cid,
                         mismatch, declared, num_classes)
    for cid in mismatch.absent:
        warn("categories", f"project class {cid} {declared[cid]!r} is not in this file",
             code="class-not-in-file")
    for cid, name in sorted((declared or {}).items()):
        if cid in cat_records and has_images and per_cat[cid] == 0:
            warn("annotations", f"no annotations of project class {cid} {name!r}",
                 code="class-without-annotations")


def _check_categories(categories: list[Any], err: Report) -> dict[int, str]:
    """id -> record (for findings) of the valid category records."""
    cat_records: dict[int, str] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not _is_int(c.get("id")):
            err(f"categories[{i}]", "needs an integer 'id'", code="category-id")
            continue
        cid, name = c["id"], c.get("name")
        rec = f"categories[{i}] (id {cid}, name {name!r})"
        if cid in cat_records:
            err(rec, f"duplicate category id {cid}", code="duplicate-category-id")
            continue
        if not isinstance(name, str) or not name:
            err(rec, "needs a non-empty 'name'", code="category-name")
        cat_records[cid] = rec
    return cat_records


ImageFile = tuple[str, str, int | None, int | None]  # (record, file_name, width, height)


def _check_images(images: list[Any], err: Report,
                  warn: Report) -> tuple[dict[Any, tuple[int, int] | None], list[ImageFile]]:
    """(image id -> (w, h) or None when unusable, image files to look for)."""
    sizes: dict[Any, tuple[int, int] | None] = {}
    seen_names: dict[str, int] = {}
    files: list[ImageFile] = []
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            err(f"images[{i}]", "is not an object", code="image-record")
            continue
        iid, fname = im.get("id"), im.get("file_name")
        rec = f"images[{i}] (id {iid}, file_name {fname!r})"
        if not _is_int(iid):
            err(rec, "needs an integer 'id'", code="image-id")
            continue
        if iid in sizes:
            err(rec, f"duplicate image id {iid}", "image ids must be unique",
                "duplicate-image-id")
            continue
        w: Any = im.get("width")
        h: Any = im.get("height")
        size_ok = _is_int(w) and _is_int(h) and w > 0 and h > 0
        if not size_ok:
            err(rec, f"needs positive integer 'width' and 'height' (got {w!r}, {h!r})",
                "TAO's loader reads them from the JSON", "image-size")
        sizes[iid] = (w, h) if size_ok else None
        if not isinstance(fname, str) or not fname:
            err(rec, "needs a non-empty 'file_name'", code="image-file-name")
            continue
        outside = _outside(fname)
        if outside:
            err(rec, f"file_name {outside}: TAO would read an image from outside image_dir, "
                "which taomake neither tracks (a change rebuilds nothing) nor mounts into "
                "containers", "make file_name relative to image_dir and put the image there",
                "image-outside-folder")
            continue
        if fname in seen_names:
            warn(rec, f"same file_name as images[{seen_names[fname]}]", code="duplicate-file-name")
        seen_names[fname] = i
        files.append((rec, fname, w if size_ok else None, h if size_ok else None))
    return sizes, files


def _outside(fname: str) -> str | None:
    """Why a file_name would leave the image folder (os.path.join lets an absolute one win)."""
    if fname.startswith("h5://"):
        return None
    if fname.startswith(("/", "\\")) or (len(fname) > 1 and fname[1] == ":"):
        return f"{fname!r} is an absolute path"
    if ".." in fname.replace("\\", "/").split("/"):
        return f"{fname!r} climbs out of the folder with '..'"
    return None


def _check_annotations(annotations: list[Any], sizes: dict[Any, tuple[int, int] | None],
                       cat_records: dict[int, str], err: Report,
                       warn: Report) -> tuple[Counter[int], set[tuple[int, int]]]:
    """The hot loop (one pass, dict/set lookups only); record strings are built on error only."""
    ann_ids: set[Any] = set()
    per_cat: Counter[int] = Counter()
    cat_images: set[tuple[int, int]] = set()
    bad_cats: dict[int, list[Any]] = {}  # category id -> [first record, count]
    crowd: list[Any] = []  # [first record, count] of iscrowd annotations
    tol = BBOX_TOLERANCE

    def rec(i: int, a: dict[str, Any]) -> str:
        return f"annotations[{i}] (id {a.get('id')})"

    for i, a in enumerate(annotations):
        if type(a) is not dict:
            err(f"annotations[{i}]", "is not an object", code="annotation-record")
            continue
        aid = a.get("id")
        if aid is None:
            err(rec(i, a), "has no 'id'", "pycocotools indexes annotations by id",
                "annotation-id")
        else:
            aid = _key(aid)
            if aid in ann_ids:
                err(rec(i, a), f"duplicate annotation id {aid}",
                    "annotation ids must be unique (COCO eval silently drops duplicates)",
                    "duplicate-annotation-id")
            ann_ids.add(aid)
        iid = _key(a.get("image_id"))
        size = None
        if iid in sizes:
            size = sizes[iid]
        else:
            err(rec(i, a), f"image_id {iid!r} is not an image in this file",
                "fix image_id or add the image record", "unknown-image")
        cid = a.get("category_id")
        if type(cid) is not int:
            err(rec(i, a), f"needs an integer 'category_id' (got {cid!r})", code="category-id")
        else:
            per_cat[cid] += 1
            if size is not None or iid in sizes:
                cat_images.add((cid, iid))
            if cid not in cat_records:
                bad_cats.setdefault(cid, [rec(i, a), 0])[1] += 1
        _check_box(a, size, iid, lambda *f, i=i, a=a: err(rec(i, a), *f), tol)
        if a.get("iscrowd", 0):
            if crowd:
                crowd[1] += 1
            else:
                crowd[:] = [rec(i, a), 1]
        if a.get("ignore", 0) != 0:
            err(rec(i, a), f"'ignore' is {a['ignore']!r}", "TAO needs ignore absent or 0",
                "ignore")

    _report_counted(crowd, bad_cats, err, warn)
    return per_cat, cat_images


def _check_box(a: dict[str, Any], size: tuple[int, int] | None, iid: Any,
               err: Callable[..., None], tol: float) -> None:
    """One annotation's bbox (format, degenerate, inside its image) and area."""
    bbox: Any = a.get("bbox")
    if not _is_box(bbox):
        err(f"'bbox' must be 4 numbers [x, y, w, h] (got {bbox!r})", "", "bbox-format")
    else:
        x, y, bw, bh = bbox
        if bw <= 0 or bh <= 0:
            err(f"degenerate bbox {bbox} (width and height must be > 0)",
                "TAO silently drops such boxes; fix or remove the annotation",
                "bbox-degenerate")
        elif size is not None and (x < -tol or y < -tol or x + bw > size[0] + tol
                                   or y + bh > size[1] + tol):
            err(f"bbox {bbox} is outside the {size[0]}x{size[1]} image {iid}",
                "bbox is [x, y, width, height] in pixels of that image", "bbox-outside")
    area = a.get("area")
    if area is None or not _is_num(area):
        err("has no 'area'" if "area" not in a else f"'area' must be a number (got {area!r})",
            "TAO raises KeyError without it; use w*h of the bbox", "missing-area")


def _report_counted(crowd: list[Any], bad_cats: dict[int, list[Any]], err: Report,
                    warn: Report) -> None:
    """What is said once for many annotations: crowd boxes, unknown category ids."""
    if crowd:
        first, n = crowd
        warn(first, f"{n} annotation{'s have' if n != 1 else ' has'} iscrowd set (this is the "
             "first): TAO trains on crowd boxes as if each were one object "
             "(rtdetr/dataloader/serialized_dataset.py keeps them), while COCO evaluation "
             "treats them as regions to ignore, so training and evaluation disagree",
             "set iscrowd to 0 where the box is one object; leave it for true crowd regions",
             "iscrowd")
    # Category ids used by annotations but not in `categories`: one finding per id, not per box.
    for cid, (first, n) in sorted(bad_cats.items()):
        err(first, f"category_id {cid} is not in this file's categories (used by {n} "
            f"annotation{'s' if n != 1 else ''})", "add the category or fix the annotations",
            "unknown-category")


def _report_class_id(err: Report, warn: Report, rec: str, cid: int, mismatch: ClassMismatch,
                     declared: dict[int, str] | None, num_classes: int | None) -> None:
    if cid in mismatch.undeclared:
        err(rec, f"category id {cid} is not a project class "
            f"(project classes: {', '.join(f'{k} {v}' for k, v in sorted(declared.items()))})",
            "add it to the project's classes or remove it from the data", "undeclared-category")
    if cid in mismatch.renamed:
        name, project_name = mismatch.renamed[cid]
        warn(rec, f"category {cid} is named {name!r} here but {project_name!r} in the project",
             "the project's name is used for the classmap; rename one to match",
             "class-name-mismatch")
    if cid in mismatch.out_of_range:
        err(rec, f"category id {cid} is outside [0, num_classes-1] = [0, {num_classes - 1}]",
            f"TAO uses category_id as the label index: num_classes must be at least {cid + 1}"
            if cid >= 0 else "category ids must be >= 0", "category-out-of-range")


def _check_image_files(image_dir: Path, files: list[tuple[str, str, int | None, int | None]],
                       open_images: bool, report: CocoReport, err: Report,
                       decoder: Decoder | None) -> None:
    if not image_dir.is_dir():
        err("", f"image_dir {image_dir} is not a directory",
            "TAO reads images from a plain folder (no tar/zip, docs/tao-notes.md §5)", "image-dir")
        return
    listings: dict[str, set[str]] = {}  # one scandir per folder instead of a stat per image

    def exists(p: str) -> bool:
        parent, name = os.path.split(p)
        if parent not in listings:
            try:
                with os.scandir(parent or ".") as it:
                    listings[parent] = {e.name for e in it}
            except OSError:
                listings[parent] = set()
        return name in listings[parent]

    to_decode: list[tuple[str, str, int | None, int | None]] = []
    for rec, fname, w, h in files:
        if fname.startswith("h5://"):
            # h5://<basename>:<key> lives in <image_dir>/<basename>.h5 (docs/tao-notes.md §5)
            base = fname[len("h5://"):].split(":", 1)[0]
            if not exists(os.path.join(image_dir, base + ".h5")):
                err(rec, f"HDF5 file {base}.h5 not found in {image_dir}", code="image-missing")
            continue
        p = os.path.join(image_dir, fname)
        if not exists(p):
            err(rec, f"image file {p} not found", "check image_dir and file_name",
                "image-missing")
            continue
        if open_images:
            to_decode.append((rec, p, w, h))
    if not to_decode:
        return
    verdicts = (decoder or decode_images)([p for _, p, _, _ in to_decode])
    for rec, p, w, h in to_decode:
        actual, problem = verdicts[p]
        if problem is not None or actual is None:
            err(rec, f"image file {p} cannot be decoded: {problem}", "replace the file",
                "image-unreadable")
            continue
        report.images_opened += 1
        if w is not None and tuple(actual) != (w, h):
            err(rec, f"width/height in the JSON are {w}x{h} but {p} is {actual[0]}x{actual[1]}",
                "fix width/height (an EXIF-rotated photo can cause this)", "image-size-mismatch")


Verdict = tuple[tuple[int, int] | None, str | None]  # (width, height) or None, problem or None
Decoder = Callable[[list[str]], dict[str, Verdict]]


def decode_image(path: str) -> Verdict:
    """Decode every pixel (what TAO's loader will do): `Image.verify()` alone passes a
    truncated JPEG, `load()` does not."""
    from PIL import Image  # lazy: the compiler's fast path never needs Pillow

    try:
        with Image.open(path) as im:
            im.load()
            return im.size, None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


def decode_images(paths: list[str]) -> dict[str, Verdict]:
    return {p: decode_image(p) for p in paths}

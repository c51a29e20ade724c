"""Where everything lives, as paths relative to the project folder.

Specs never contain absolute paths that taomake made up: TAO is always started with the project
folder as its working directory (on the host, in a container that mounts it at the same path,
on a SLURM node), so moving the project folder or switching runner leaves every spec unchanged.
Build rules use the same functions, so the DAG and the specs agree by construction.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass

from .actions import ACTIONS

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # what TAO reads as images
# taomake's own records inside a folder TAO writes (job specs, resume guard, provenance),
# hidden so that TAO and users listing the outputs do not mistake them for artifacts
RECORDS_DIR = ".taomake"
# The lease a job holds on its action folder (taomake.lease): a lock file and who holds it.
# Beside the records folder, not in it: the resume guard moves the records aside, and a lock
# file must never move or go while anyone may hold it.
LEASE_FILE, LEASE_RECORD = ".lease", ".lease.json"
# TAO's checkpoints in a training's folder (docs/tao-notes.md §3.2): model_epoch_NNN.pth (EMA
# copies: model_epoch_NNN-EMA.pth) and `<name>_latest.pth`, the link TAO resumes from
CHECKPOINT_GLOB = "model_epoch_*.pth"
CHECKPOINT_RE = re.compile(r"^model_epoch_(\d+)\.pth$")
EPOCH_FILE_RE = re.compile(r"^model_epoch_(\d+)(?:-EMA)?\.pth$")
LATEST_GLOB = "*_latest.pth"
LATEST_NAME = "rtdetr_model_latest.pth"  # what TAO calls it when it writes one


def checkpoint_name(epoch: int) -> str:
    return f"model_epoch_{epoch:03d}.pth"


PROVENANCE_GLOB = "provenance-*.json"
# A data source's folder (Shared.source_dir): its stamp and staging marker, and the records
# the staging keeps beside them (taomake.data.identity, taomake.data.stage)
SOURCE_STAMP, STAGED_MARKER = "source.json", "staged.json"
SOURCE_STATE = "state.json"  # what the staged copy is now (survives a deleted marker)
SOURCE_DOWNLOAD = "download.json"  # an archive downloaded for its identity, to extract
HASH_CACHE = "hashes.json"  # local: relative name -> [stat key..., digest]
ETAG_CACHE = "etags.json"  # S3: relative name ("" for one object) -> [etag, size, digest]
# beside anything taomake moves aside (stale or damaged checkpoints): why it did
WHY_FILE = "WHY.txt"
SUMMARY_TABLE = "summary.md"  # the report's summary: what the default target asks for


def digest_record(folder: str, name: str) -> str:
    """Where the sha256 of a file `name` in `folder` is kept (taomake.digests)."""
    return posixpath.join(folder, RECORDS_DIR, "sha256", f"{name}.json")


def node_spec_name(stem: str, rank: int | str) -> str:
    """Node `rank`'s own copy of a job spec (`job-train.yaml` -> `job-train.node1.yaml`)."""
    return f"{stem}.node{rank}.yaml"


def cut_split(role: str) -> str:
    """A split `taomake init` cut from the training set (train or val), beside project.yaml
    (the user's own annotations are never rewritten)."""
    return posixpath.join("splits", f"{role}.json")


def provenance_record(folder: str, step: str) -> str:
    """taomake's provenance of what `step` built in `folder` (taomake.provenance)."""
    return posixpath.join(folder, RECORDS_DIR, f"provenance-{step}.json")
# An experiment's (or a project's) name is the folder of its results: letters, digits, _ . -,
# never starting with `_` or `.` (the shared data and records folders) and never one of the
# shared folders beside the experiments'.
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SHARED_FOLDERS = ("logs", "benchmarks", "report")


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def source_slot(project_key: str, uri: str = "", *, base: bool = True) -> str:
    """The folder name (under `<results>/_data/`) of the data source at a project.yaml key:
    `dataset.train[0].images` -> `train-0-images`.  Named by its place in the project, not by
    its path, so a dataset moved or copied elsewhere keeps its folder, its stamp and the specs
    that name it: what it is, is its content (taomake.data.identity).  A source an experiment
    sets apart from the base project (`base=False`) adds a hash of its URI."""
    parts = project_key.removeprefix("dataset.").replace("[", ".").replace("]", "").split(".")
    slot = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts if p))[:60]
    if base:
        return slot
    return f"{slot}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"


def image_key(ref: str) -> str:
    """Short, stable name part for an image reference: tag + hash."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref.rsplit(":", 1)[-1] if ":" in ref else ref)
    return f"{tag[:24]}-{hashlib.sha256(ref.encode()).hexdigest()[:6]}"


def dataset_paths(spec: dict, role: str | None = None) -> list[str]:
    """Every image folder and annotation file a spec's `dataset.*_data_sources` name (only
    `<role>_data_sources` with a role), and an INT8 engine's calibration images, in order,
    without repeats."""
    paths: list[str] = []
    for key, value in (spec.get("dataset") or {}).items():
        if not key.endswith("_data_sources") or (role and key != f"{role}_data_sources"):
            continue
        for source in value if isinstance(value, list) else [value] if value else []:
            for field in ("image_dir", "json_file"):
                entry = source.get(field)
                for path in entry if isinstance(entry, list) else [entry]:
                    if path and path not in paths:
                        paths.append(path)
    if role is None:  # INT8 engines read calibration images outside `dataset`
        calibration = ((spec.get("gen_trt_engine") or {}).get("tensorrt") or {}).get(
            "calibration") or {}
        data_type = str(((spec.get("gen_trt_engine") or {}).get("tensorrt") or {}).get(
            "data_type", "")).upper()
        if data_type == "INT8":
            for path in calibration.get("cal_image_dir") or []:
                if path and path not in paths:
                    paths.append(path)
    return paths


def sanitise(image_ref: str) -> str:
    """A file name for an image reference: nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt ->
    nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt (digests keep their hex)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_ref).strip("_.")


def image_file(image_ref: str, image_dir: str, kind: str) -> str:
    """Where the converted image of `image_ref` lives: <image_dir>/<sanitised ref>.sif|.sqsh."""
    from .runners import RUNNERS

    ext = RUNNERS[kind].image_file if kind in RUNNERS else ""
    if not ext:
        raise ValueError(f"no image file for runner kind {kind!r}")
    return os.path.join(image_dir, sanitise(image_ref) + ext)


@dataclass(frozen=True)
class Layout:
    """Paths of one experiment's files, relative to the project folder.  The rules use a
    Layout whose experiment is the wildcard `{exp}` (rules/common.smk `L`), so the DAG and
    the jobs, reports and commands name the same files."""

    results: str  # project.results, e.g. "results"
    experiment: str

    @property
    def root(self) -> str:
        """The experiment's results folder."""
        return posixpath.join(self.results, self.experiment)

    def spec(self, action: str) -> str:
        """An action's compiled TAO spec (written only when its content changes)."""
        return posixpath.join(self.root, "specs", f"{action}.yaml")

    @property
    def classmap(self) -> str:
        """The class map PyTorch inference reads (line k names label k)."""
        return posixpath.join(self.root, "specs", "classmap.txt")

    @property
    def classmap_deploy(self) -> str:
        """The class map TensorRT inference reads (line k names label k-1)."""
        return posixpath.join(self.root, "specs", "classmap_deploy.txt")

    def action_dir(self, results_subdir: str) -> str:
        """TAO's own output folder for an action (results_dir/<subdir>)."""
        return posixpath.join(self.root, results_subdir)

    def folder(self, action: str) -> str:
        """An action's output folder (quantized_evaluate: quantized/evaluate)."""
        return self._output(action, "").rstrip("/")

    def checkpoint_file(self, action: str, name: str) -> str:
        """A checkpoint TAO saved in a training's folder (by its file name)."""
        return self._output(action, name)

    def _output(self, action: str, name: str) -> str:
        """A file in an action's output folder (quantized_evaluate: quantized/evaluate/).
        `action` may be the rules' `{source}` wildcard (train or distill, folders of their
        own name)."""
        folder = ACTIONS[action].results_subdir if action in ACTIONS else action
        return posixpath.join(self.root, folder, name)

    def model(self, source_action: str) -> str:
        """Stable path of the selected checkpoint of train (or distill)."""
        return self._output(source_action, "model.pth")

    def curve(self, source_action: str) -> str:
        """Per-epoch losses and validation mAPs of train (or distill)."""
        return self._output(source_action, "curve.csv")

    def run_record(self, source_action: str) -> str:
        """What a finished training saved (its checkpoints), written by its job."""
        return self._output(source_action, "run.json")

    def selection(self, source_action: str) -> str:
        """Which epoch became model.pth, and why."""
        return self._output(source_action, "selection.json")

    def metrics(self, action: str = "evaluate") -> str:
        """test_mAP/test_mAP50 of an evaluation (evaluate, quantized_evaluate, trt_evaluate)."""
        return self._output(action, "metrics.json")

    def inference_summary(self, action: str = "inference") -> str:
        """Detections per class of an inference run."""
        return self._output(action, "summary.json")

    def labels(self, action: str = "inference") -> str:
        """TAO inference's label files (KITTI, one per image)."""
        return self._output(action, "labels")

    def label_file(self, action: str, image_stem: str) -> str:
        """The label file TAO inference writes for one image."""
        return posixpath.join(self.labels(action), f"{image_stem}.txt")

    def status(self, action: str) -> str:
        """TAO's status.json of an action (JSON lines, appended by every run)."""
        return self._output(action, "status.json")

    def trt_results(self, action: str) -> str:
        """TAO deploy evaluate's own results (AP, AP50)."""
        return self._output(action, "results.json")

    @property
    def parity(self) -> str:
        """The ONNX checked against the PyTorch evaluation (and its latency)."""
        return self._output("export", "parity.json")

    def rung_record(self, rung: int | str) -> str:
        """A successive-halving rung's curve of one trial (the train outputs stay the
        full training's)."""
        return self._output("train", f"rung{rung}.json")

    @property
    def upload_receipt(self) -> str:
        """What was pushed to `upload.to`, with checksums."""
        return posixpath.join(self.root, "upload.json")

    def _sweep(self, name: str) -> str:
        return posixpath.join(self.root, "sweep", name)

    def sweep_rung(self, rung: int | str) -> str:
        """A sweep's decision after a rung of successive halving: which trials go on (its
        folder is the swept experiment's name)."""
        return self._sweep(f"rung{rung}.json")

    @property
    def sweep_best(self) -> str:
        """The sweep's winner, chosen once every finalist has trained."""
        return self._sweep("best.json")

    @property
    def sweep_winner(self) -> str:
        """The sweep's own up-to-date marker: its winner's artifacts are built."""
        return self._sweep("winner.json")

    def log(self, name: str) -> str:
        """A job's log (TAO's output, taomake's notes)."""
        return posixpath.join(self.root, "logs", f"{name}.log")

    def benchmark(self, name: str) -> str:
        """Snakemake's `benchmark:` record of a job (wall and CPU time, memory)."""
        return posixpath.join(self.root, "benchmarks", f"{name}.tsv")

    @property
    def detections(self) -> str:
        """Per-class scores under the class names and the test-image grid (`detections`)."""
        return posixpath.join(self.root, "detections")

    @property
    def per_class(self) -> str:
        """Per-class AP of the PyTorch (and ONNX) detections on the test split."""
        return posixpath.join(self.detections, "per_class.json")

    @property
    def per_class_table(self) -> str:
        """The same, as a Markdown table."""
        return posixpath.join(self.detections, "per_class.md")

    @property
    def test_grid(self) -> str:
        """Test images, ground truth next to the detections, with the report's plots."""
        return Shared(self.results).test_grid(self.experiment)

    def job_spec(self, action: str) -> str:
        """The job's own copy of its spec (TAO may rewrite it in place: multi-node)."""
        return self.record(action, f"job-{action}.yaml")

    def resume_record(self, action: str) -> str:
        """The spec and runtime a training's checkpoints were made with (taomake.resume)."""
        return self.record(action, "checkpoints-spec.yaml")

    def tao_run(self, action: str) -> str:
        """How long TAO took, with which runner and command (the last successful run)."""
        return self.record(action, f"run-{action}.json")

    def provenance(self, action: str) -> str:
        """What an action's artifacts were built from (taomake.provenance)."""
        return provenance_record(self.folder(action), action)

    def tao_config(self, action: str) -> str:
        """The resolved config TAO writes beside its results."""
        return self._output(action, "experiment.yaml")

    def built_record(self, action: str) -> str:
        """The spec an action's artifacts were last built from, written by its job when it
        succeeded, with the job's start time as its mtime (taomake.jobs, compiler.writer)."""
        return self.record(action, f"built-{action}.yaml")

    def attempts_record(self, action: str) -> str:
        """How each SLURM attempt of the action's job ended (taomake.slurm_chain)."""
        return self.record(action, "slurm-attempts.jsonl")

    def lease(self, action: str) -> str:
        """The lock a job holds on its action folder for its whole life (taomake.lease)."""
        return self._output(action, LEASE_FILE)

    def lease_record(self, action: str) -> str:
        """Who holds (or last held) the folder's lease."""
        return self._output(action, LEASE_RECORD)

    def record(self, action: str, name: str) -> str:
        """taomake's own record of an action's job (`<action dir>/.taomake/<name>`): the spec
        a job ran and built, the resume guard, provenance."""
        return posixpath.join(self._output(action, RECORDS_DIR), name)

    def onnx_of(self, action: str) -> str:
        """The ONNX an export action writes (export, quantized_export)."""
        return self._output(action, "model.onnx")

    @property
    def onnx(self) -> str:
        """The exported ONNX of the selected checkpoint."""
        return self.onnx_of("export")

    def engine(self, precision: str, bmin: int, bopt: int, bmax: int, image: str) -> str:
        """Keyed by precision, batch profile and the deploy image (an engine only runs on
        the TensorRT that built it), so variants coexist."""
        return self.engine_pattern(precision.lower(),
                                   f"{bmin}-{bopt}-{bmax}.{image_key(image)}")

    def engine_pattern(self, precision: str = "{precision}", profile: str = "{profile}") -> str:
        """`engine`'s path with rule wildcards for its precision and profile (+ image key)."""
        return posixpath.join(self.root, "gen_trt_engine",
                              f"model.{precision}.b{profile}.engine")

    @staticmethod
    def calibration_cache(engine: str) -> str:
        """INT8 calibration cache: its own artifact, named after the engine it serves."""
        return engine.removesuffix(".engine") + ".calib.bin"

    def quantized(self, backend: str) -> str:
        """quantize's model (TAO names it after the backend, docs/tao-notes.md §7)."""
        if backend == "modelopt.onnx":
            return self._output("quantize", "quantized_model.onnx")
        return self._output("quantize", f"quantized_model_{backend}.pth")

    @property
    def quantized_onnx(self) -> str:
        """The quantized model's ONNX (the quantized_export action)."""
        return self.onnx_of("quantized_export")


@dataclass(frozen=True)
class Shared:
    """Paths of the files every experiment of a project shares, relative to the project
    folder: staged data sources and their checks, the runtime markers, the report.  Like
    Layout, the rules use it with wildcards for arguments (`{source_key}`, `{check}`)."""

    results: str  # project.results

    def _at(self, *parts: str) -> str:
        return posixpath.join(self.results, *parts)

    # -- data: one folder per source (stamp, staged copy), checks, the transfer ledger
    def source_dir(self, key: str) -> str:
        """Folder of one data source (`source_slot`): its stamp and what TAO reads (a link to
        local data, or the staged copy of remote and archived data)."""
        return self._at("_data", key)

    def source_stamp(self, key: str) -> str:
        """The source's identity, rewritten only when it changes (taomake.data.identity)."""
        return posixpath.join(self.source_dir(key), SOURCE_STAMP)

    def staged_marker(self, key: str) -> str:
        """Written by the staging job once the staged copy is complete."""
        return posixpath.join(self.source_dir(key), STAGED_MARKER)


    def staged_images(self, key: str) -> str:
        """Where TAO reads a source's images: a link, or the staged copy."""
        return posixpath.join(self.source_dir(key), "images")

    def staged_annotations(self, key: str) -> str:
        """Where TAO reads a source's annotations: a link, or the staged copy."""
        return posixpath.join(self.source_dir(key), "annotations.json")

    @property
    def checks_dir(self) -> str:
        """Dataset check reports and the decoded-image cache behind them."""
        return self._at("_data", "checks")

    def data_check(self, check: str) -> str:
        """A dataset check's report (shared by experiments reading the same data)."""
        return posixpath.join(self.checks_dir, f"{check}.json")

    @property
    def transfers(self) -> str:
        """Every byte fetched from a remote source, one JSON line per transfer."""
        return self._at("_data", "transfers.jsonl")

    def data_log(self, name: str) -> str:
        """A data job's log."""
        return self._at("_data", "logs", f"{name}.log")

    def data_benchmark(self, name: str) -> str:
        """Snakemake's benchmark record of a data job (staging, a check)."""
        return self._at("_data", "benchmarks", f"{name}.tsv")

    # -- runtimes: a marker per (experiment or sweep, pytorch|deploy) TAO jobs wait for
    def runtime_marker(self, runtime: str, flavor: str) -> str:
        """The TAO runtime of an experiment (or sweep) and flavor is ready: its converted
        image exists (apptainer, pyxis); TAO jobs wait for it."""
        return self._at(RECORDS_DIR, "runtime", f"{runtime}.{flavor}.ready")

    def log(self, name: str) -> str:
        """A log of a job that is no experiment's (runtime, image, report)."""
        return self._at("logs", f"{name}.log")

    def benchmark(self, name: str) -> str:
        """Snakemake's benchmark record of a job that is no experiment's."""
        return self._at("benchmarks", f"{name}.tsv")

    # -- the report: tables (one row per run, per experiment: CSV, Markdown, LaTeX), plots
    REPORT_TABLES = ("results.csv", "summary.csv", SUMMARY_TABLE, "summary.tex")
    PLOTS_GLOB = "*.png"

    @property
    def report_dir(self) -> str:
        """The report: tables and plots of every experiment."""
        return self._at("report")

    def _report(self, name: str) -> str:
        return posixpath.join(self.report_dir, name)

    def report_tables(self) -> list[str]:
        """The report's tables: results.csv, summary.csv, summary.md, summary.tex."""
        return [self._report(name) for name in self.REPORT_TABLES]

    @property
    def report_results(self) -> str:
        """One row per run, raw values."""
        return self._report("results.csv")

    @property
    def report_summary_csv(self) -> str:
        """Per experiment: mean and standard deviation over its runs."""
        return self._report("summary.csv")

    @property
    def report_summary(self) -> str:
        """The same in Markdown: what the default target asks for."""
        return self._report(SUMMARY_TABLE)

    @property
    def report_latex(self) -> str:
        """The same as a booktabs table."""
        return self._report("summary.tex")

    @property
    def report_curves(self) -> str:
        """val_mAP and losses per epoch, every run overlaid."""
        return self._report("curves.png")

    @property
    def report_accuracy_latency(self) -> str:
        """Accuracy against ONNX / engine latency, per experiment."""
        return self._report("accuracy_latency.png")

    def sweep_plot(self, sweep: str) -> str:
        """A sweep's trials: the metric against each swept value."""
        return self._report(f"sweep_{sweep}.png")

    def rungs_plot(self, sweep: str) -> str:
        """Successive halving: each trial's score per rung."""
        return self._report(f"sweep_{sweep}_rungs.png")

    def test_grid(self, experiment: str) -> str:
        """Test images, ground truth next to detections: with the report's other plots."""
        return self._report(f"test_grid_{experiment}.png")


@dataclass(frozen=True)
class DataSource:
    """One dataset input named in project.yaml: a local path (relative to project.yaml) or an
    s3:// URI; kind "images" (a folder or an archive of images) or "file" (annotations); `key`
    its folder under `<results>/_data/` (`source_slot`: its place in the project).

    Every source has a stamp (`source.json`: its content identity, rewritten only when that
    changes) so rules depend on content, neither on mtimes nor on where the data lies.  TAO
    reads every source at `target`, inside that folder: a symbolic link to a local file or
    folder (moved when the data moves), or the staged copy of a remote or archived source,
    whose staging rule's marker (`staged.json`) is what jobs depend on.
    """

    uri: str
    kind: str  # "images" | "file"
    key: str = ""  # "": a source outside a project (a folder named after its URI)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", source_slot(
                "-".join(self.uri.rstrip("/").split("/")[-2:]), self.uri, base=False))

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    @property
    def archive(self) -> bool:
        return self.kind == "images" and is_archive(self.uri)

    @property
    def staged(self) -> bool:
        return self.remote or self.archive

    def folder(self, results: str) -> str:
        return Shared(results).source_dir(self.key)

    def stamp(self, results: str) -> str:
        return Shared(results).source_stamp(self.key)

    def marker(self, results: str) -> str:
        return Shared(results).staged_marker(self.key)

    def target(self, results: str) -> str:
        """The path TAO reads (what the specs name): a link to the local data, or the
        staged copy."""
        if self.kind == "images":
            return Shared(results).staged_images(self.key)
        return Shared(results).staged_annotations(self.key)

    def dependency(self, results: str) -> str:
        """What a job reading this source depends on in the DAG."""
        return self.marker(results) if self.staged else self.stamp(results)

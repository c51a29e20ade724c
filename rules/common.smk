# Input functions of the rules: what each job reads, from the plan (rules/plan.smk).  No side
# effects: nothing here writes a file or reaches a data source.
import re

from snakemake.exceptions import WorkflowError

from taomake.compiler.actions import ACTIONS, REPORTED
from taomake.compiler.layout import Layout, dataset_paths


def exps_with(action):
    """The `exp` wildcard of an action's rule: experiments that have the action, so a target
    of one without it (no test split: no evaluate) is "no rule to make it", not a crash.
    Written the short way round: any name (all have it), the names that have it, or any name
    but those that lack it (every path has a `/` after the experiment)."""
    having = [name for name, e in EXPS.items() if action in e.specs]
    lacking = [name for name, e in EXPS.items() if action not in e.specs]
    if not lacking:
        return EXP_NAME
    if len(having) <= len(lacking):
        return "|".join(map(re.escape, having)) or "(?!)"  # (?!) matches nothing
    return f"(?!(?:{'|'.join(map(re.escape, lacking))})/){EXP_NAME}"


def experiment(w):
    """The experiment a job's `exp` wildcard names; a target naming no experiment of the
    project (a typo on the command line) stops with the list of names."""
    exp = EXPS.get(w.exp)
    if exp is None:
        raise WorkflowError(f"{w.exp!r} is not an experiment of {PLAN.project_file}; "
                            f"experiments: {', '.join(sorted(EXPS)[:20])}"
                            + (" ..." if len(EXPS) > 20 else ""))
    return exp


def layout(exp):
    return EXPS[exp].layout


def model_of(exp):
    """The selected checkpoint evaluate/export/inference consume."""
    return layout(exp).model(EXPS[exp].source_action)


def data_paths(exp, action):
    """What an action's data is in the DAG: for each annotation file and image folder its
    spec reads, the source's stamp (local, content-hashed) or staging marker (S3, archives)."""
    paths = [DATA_SOURCE_OF[path].dependency(R) if path in DATA_SOURCE_OF else path
             for path in dataset_paths(EXPS[exp].specs[action].data)
             if path in DATA_SOURCE_OF or not os.path.isabs(path)]
    return sorted(set(paths))


def data_inputs(action):
    return lambda w: data_paths(w.exp, action)


def tao_inputs(action, checks=(), model=False, gate=None):
    """What each TAO job reads, for `unpack()`: its spec, the runtime marker, its data,
    the dataset checks of `checks` roles, the selected checkpoint (`model`) and the extra
    files `gate(w)` names.  A single function, not one per input, since Snakemake calls
    input functions per job, which counts in sweeps of a thousand trials."""
    flavor = ACTIONS[action].flavor

    def inputs(w):
        exp = experiment(w)
        marker = SH.runtime_marker(RUNTIME_OF[w.exp], flavor)
        named = {"spec": exp.specs[action].path, "image": ancient(marker),
                 "data": data_paths(w.exp, action)}
        if checks:
            named["checked"] = [SH.data_check(exp.checks[role]) for role in checks
                                if role in exp.checks]
        if model:
            named["model"] = model_of(w.exp)
        if gate:
            named["gate"] = gate(w)
        return named

    return inputs


def role_inputs(w):
    """Data of the split role a check covers (train/val: the training spec's, test: the
    evaluate spec's)."""
    exp, role = CHECKS[w.check]
    action = "evaluate" if role == "test" else EXPS[exp].source_action
    paths = dataset_paths(EXPS[exp].specs[action].data, role)
    return {"data": sorted({DATA_SOURCE_OF[p].dependency(R) for p in paths
                            if p in DATA_SOURCE_OF})}


def quantized_model(action):
    """The quantized checkpoint a quantized_* spec loads (quantize's output)."""

    def model(w):
        spec = EXPS[w.exp].specs[action]
        return spec.data[ACTIONS[action].subcommand]["checkpoint"]

    return model


def engine_of(w):
    return EXPS[w.exp].specs["gen_trt_engine"].data["gen_trt_engine"]["trt_engine"]


def teacher_inputs(w):
    ref = EXPS[w.exp].specs["distill"].data["distill"]["pretrained_teacher_model_path"]
    return [ref] if ref else []


def detections_inputs(w):
    """The inference labels and, when the export is checked, the ONNX per-class scores."""
    e = experiment(w)
    out = {"inference": e.layout.inference_summary("inference")}
    if "export" in e.specs and e.parity:
        out["parity"] = e.layout.parity
    return out


def upload_files(w):
    """The files an upload job pushes (the artifacts `upload.artifacts` names)."""
    from taomake.data.upload import artifact_files

    exp = experiment(w)
    return [p for files in artifact_files(exp, exp.upload["artifacts"]).values() for p in files]


def report_inputs():
    """What the report reads (training, evaluation, export, engines; not inference, so new
    detections never redraw it), each sweep's winner and the data checks' summaries."""
    out = [path for e in EXPS.values() for action, paths in e.artifacts().items()
           if action in REPORTED for path in paths]
    checks = {SH.data_check(key) for e in EXPS.values() for key in e.checks.values()}
    return out + [winner(name) for name in SWEEPS] + sorted(checks)


def winner(sweep):
    return Layout(R, sweep).sweep_winner


def all_targets():
    """Every artifact, each sweep's winner, upload receipts and the report: the default
    target."""
    out = [path for e in EXPS.values() for paths in e.artifacts().values() for path in paths]
    out += [winner(name) for name in SWEEPS]
    return out + [e.layout.upload_receipt for e in EXPS.values()
                  if e.upload] + [SH.report_summary]


def runtime_image(w):
    """The converted image behind a runtime marker, or [] (local/docker runners)."""
    entry = RUNTIME_IMAGES.get(w.runtime, {}).get(w.flavor)
    return [entry[0]] if entry else []


IMAGE_FILES = {path: ref for images in RUNTIME_IMAGES.values()
               for path, ref in images.values()}


def image_conversion(w):
    """The runner's conversion of one image into <file>.part (apptainer build, enroot
    import: rules/images.smk)."""
    import shlex

    from taomake.runners.registry import kind_of_image_file, runner_module

    convert = runner_module(kind_of_image_file(w.image)).conversion_argv
    return shlex.join(convert(IMAGE_FILES[w.image], f"{PREFIX}{w.image}.part"))


# --------------------------------------------------------------------------- sweeps
def sweep_of(exp):
    return SWEEPS.get(EXPS[exp].group, {})

def rung_survivors(sweep, rung):
    """Trials that train in `rung`: all in rung 0, later those the previous decision kept."""
    import json

    if rung == 0:
        return list(SWEEPS[sweep]["trials"])
    with open(checkpoints.sweep_rung.get(sweep=sweep, rung=str(rung - 1)).output.decision) as f:
        return json.load(f)["promoted"]

def rung_inputs(w):
    """A rung (r > 0) of a trial waits for its own previous rung (so it resumes from those
    checkpoints) and for the decision that promoted it."""
    rung, group = int(w.rung), EXPS[w.exp].group
    if rung == 0:
        return []
    return [layout(w.exp).rung_record(rung - 1),
            Layout(R, group).sweep_rung(rung - 1)]

def sweep_finalists(w):
    """The training curves the winner is chosen from (a checkpoint is selected for the
    winner only, when its evaluation asks for it)."""
    sweep = SWEEPS[w.sweep]
    trials = (rung_survivors(w.sweep, len(sweep["rungs"]) - 1) if sweep["rungs"]
              else list(sweep["trials"]))
    return [layout(t).curve("train") for t in trials]

def halving_gate(w):
    """The full training of a successive-halving trial starts after the last decision
    (and resumes from the trial's last rung)."""
    sweep = sweep_of(w.exp)
    if not EXPS[w.exp].halving:
        return []
    last = len(sweep["rungs"]) - 2
    return [layout(w.exp).rung_record(last),
            Layout(R, EXPS[w.exp].group).sweep_rung(last)]

def winner_artifacts(w):
    """The winning trial's evaluation/export/inference (known once best.json exists)."""
    import json

    best = checkpoints.sweep_best.get(sweep=w.sweep).output.best
    with open(best) as f:
        winner = json.load(f)["winner"]
    return [p for paths in EXPS[winner].all_artifacts().values() for p in paths]

"""Experiments × seeds, sweeps, reports, provenance and the deploy chain, on the fast TAO
double (the same with the real TAO is in test_e2e_experiments.py)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from taomake.compiler import compile_project, load_project
from taomake.compiler.errors import ProjectError
from taomake.compiler.plan import load_plan

from tests.func.test_build import calls, fake_project_text, snakemake
from tests.helpers import REPO, make_project
from tests.unit.test_tao_acceptance import variant

SEEDS_AND_SWEEP = """
experiments:
  small: {seeds: [1, 2]}
  wide: {model.hidden_dim: 96, seeds: [1, 2]}
  tuned:
    sweep:
      method: random
      trials: TRIALS
      parameters:
        train.optim.lr: {min: 0.00005, max: 0.001, log: true}
        dataset.augmentation.distortion_prob: [0.2, 0.5, 0.8]
"""


def project_text(trials: int = 4) -> str:
    return fake_project_text(", FAKE_TAO_SECRET") + SEEDS_AND_SWEEP.replace("TRIALS",
                                                                             str(trials))


def taomake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("exps") / "proj"
    make_project(folder, project_text())
    snakemake(folder, env={"FAKE_TAO_SECRET": "s3cr3t-value-123"})
    return folder


def test_seeds_and_trials_are_independent_branches(built):
    trained = sorted(c[1].split("/")[-1] for c in calls(built) if c[0] == "train")
    assert trained == ["small-s1", "small-s2", "tuned.t000", "tuned.t001", "tuned.t002",
                       "tuned.t003", "wide-s1", "wide-s2"]
    for seed in (1, 2):
        spec = (built / f"results/small-s{seed}/specs/train.yaml").read_text()
        assert f"  seed: {seed}\n" in spec
    best = json.loads((built / "results/tuned/sweep/best.json").read_text())
    assert best["winner"] in {t["trial"] for t in best["trials"]} and len(best["trials"]) == 4
    assert best["budget"] == {"train.num_epochs": 2} and "train.optim.lr" in best["values"]
    winner = json.loads((built / "results/tuned/sweep/winner.json").read_text())
    assert winner["winner"] == best["winner"]
    assert (built / f"results/{best['winner']}/evaluate/metrics.json").exists()
    # only the winner gets a selected checkpoint, an evaluation and an export
    for t in best["trials"]:
        for artifact in ("train/model.pth", "export/model.onnx"):
            built_it = (built / f"results/{t['trial']}/{artifact}").exists()
            assert built_it == (t["trial"] == best["winner"]), (t["trial"], artifact)
    # one runtime marker per experiment; the sweep's trials share theirs
    markers = sorted(p.name for p in (built / "results/.taomake/runtime").iterdir())
    assert markers == [f"{e}.pytorch.ready" for e in ("small-s1", "small-s2", "tuned",
                                                       "wide-s1", "wide-s2")]


def test_report_numbers_equal_the_metrics_files(built):
    report = built / "results/report"
    rows = list(csv.DictReader((report / "results.csv").open()))
    by_exp = {r["experiment"]: r for r in rows}
    assert set(by_exp) == {"small-s1", "small-s2", "wide-s1", "wide-s2",
                           json.loads((built / "results/tuned/sweep/best.json").read_text())
                           ["winner"]}
    for name, row in by_exp.items():
        metrics = json.loads((built / f"results/{name}/evaluate/metrics.json").read_text())
        assert float(row["test_mAP"]) == metrics["test_mAP"]
    summary = {r["experiment"]: r for r in csv.DictReader((report / "summary.csv").open())}
    small = [json.loads((built / f"results/small-s{s}/evaluate/metrics.json").read_text())
             ["test_mAP"] for s in (1, 2)]
    assert float(summary["small"]["test_mAP_mean"]) == pytest.approx(sum(small) / 2)
    assert summary["small"]["runs"] == "2" and summary["tuned"]["runs"] == "1"
    tex = (report / "summary.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$\pm$" in tex
    md = (report / "summary.md").read_text()
    assert md.startswith("| experiment | runs | test mAP") and "| small | 2 |" in md
    for png in ("curves.png", "accuracy_latency.png", "sweep_tuned.png"):
        with Image.open(report / png) as im:
            assert im.size[0] > 300 and im.size[1] > 200


def test_growing_a_random_sweep_trains_only_the_new_trials(built, tmp_path):
    import shutil

    folder = tmp_path / "grow"
    shutil.copytree(built, folder, symlinks=True)
    calls(folder)
    old = {t: (folder / f"results/tuned.{t}/specs/train.yaml").read_bytes()
           for t in ("t000", "t001", "t002", "t003")}
    (folder / "project.yaml").write_text(project_text(trials=6))
    proc = snakemake(folder)
    trained = sorted(c[1].split("/")[-1] for c in calls(folder) if c[0] == "train")
    assert trained == ["tuned.t004", "tuned.t005"], proc.stderr[-2000:]
    for t, text in old.items():  # the old trials are byte-identical: never retrained
        assert (folder / f"results/tuned.{t}/specs/train.yaml").read_bytes() == text
    best = json.loads((folder / "results/tuned/sweep/best.json").read_text())
    assert len(best["trials"]) == 6
    snakemake(folder)
    assert calls(folder) == []


def test_trial_set_is_a_pure_function_of_the_project(tmp_path):
    make_project(tmp_path, project_text(trials=3))
    a = load_project(tmp_path / "project.yaml").sweeps["tuned"].trials
    (tmp_path / "project.yaml").write_text(project_text(trials=5))
    b = load_project(tmp_path / "project.yaml").sweeps["tuned"].trials
    assert all(b[name] == values for name, values in a.items()) and len(b) == 5


@pytest.mark.parametrize("param,message", [
    ("train.num_epochs: [1, 2]", "not one of TAO's AutoML parameters"),
    ("train.optim.lr: {min: 0.0001, max: 5.0}", "outside TAO's bounds"),
    ("dataset.augmentation.distortion_prob: [0.5, 1.5]", "outside TAO's bounds"),
    ("model.dec_layers: [2, 2.5]", "2.5 is not a whole number (TAO's model.dec_layers is an int)"),
])
def test_bad_sweep_parameters(tmp_path, param, message):
    text = fake_project_text() + ("experiments:\n  tuned:\n    sweep:\n      parameters:\n"
                                  f"        {param}\n")
    make_project(tmp_path, text)
    proc = taomake(tmp_path, "validate")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert "project.yaml:" in proc.stderr


def test_grid_sweep_has_every_combination(tmp_path):
    text = fake_project_text() + (
        "sweep:\n  method: grid\n  parameters:\n    train.optim.lr: [0.0001, 0.0002]\n"
        "    model.dec_layers: [2, 3]\n")
    make_project(tmp_path, text)
    lp = load_project(tmp_path / "project.yaml")
    trials = lp.sweeps["base"].trials
    assert sorted(tuple(sorted(v.items())) for v in trials.values()) == sorted(
        (("model.dec_layers", d), ("train.optim.lr", lr)) for d in (2, 3)
         for lr in (0.0001, 0.0002))
    compiled = compile_project(lp)
    export = compiled["base.t001"].specs["export"].data  # architecture follows the trial
    assert export["model"]["dec_layers"] == trials["base.t001"]["model.dec_layers"]


def test_seeds_and_sweep_together_are_refused(tmp_path):
    text = fake_project_text() + "seeds: [1, 2]\nsweep:\n  parameters:\n" \
        "    train.optim.lr: [0.0001]\n"
    make_project(tmp_path, text)
    with pytest.raises(ProjectError, match="seeds and sweep cannot be combined"):
        load_project(tmp_path / "project.yaml")


def test_provenance_of_an_artifact(built):
    proc = taomake(built, "provenance", "results/small-s1/export/model.onnx")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["action"] == "export" and record["exit_status"] == 0
    assert "results/small-s1/export/model.onnx" in record["artifacts"]
    assert len(record["spec"]["sha256"]) == 64 and record["runtime"]["runner"] == "local"
    assert record["consumed"]["results/small-s1/train/model.pth"]
    assert record["git"].keys() == {"commit", "dirty"} and record["host"]
    assert record["command"][0] == "rtdetr" and record["start"] <= record["end"]
    assert "FAKE_TAO_SECRET" in record["env_names"]
    train = taomake(built, "provenance", "results/small-s1/train/model.pth")
    record = json.loads(train.stdout)
    assert record["action"] == "select_checkpoint" and record["trained_by"]["action"] == "train"
    data = record["trained_by"]["data"]
    train = data["results/_data/train-0-annotations/annotations.json"]
    assert train["uri"] == "data/shapes/train/annotations.json" and train["identity"]["sha256"]
    best = json.loads(taomake(built, "provenance", "results/tuned/sweep/best.json").stdout)
    assert best["action"] == "sweep_best" and best["command"][:2] == ["taomake", "sweep-best"]
    assert sorted(best["consumed"]) == [f"results/tuned.t00{i}/train/curve.csv"
                                        for i in range(4)]
    report = json.loads(taomake(built, "provenance", "results/report/summary.tex").stdout)
    assert report["action"] == "report"
    assert "results/small-s2/evaluate/metrics.json" in report["consumed"]
    assert "results/tuned/sweep/best.json" in report["consumed"]
    everything = "".join(p.read_text(errors="replace") for p in
                         (built / "results").rglob("provenance-*.json"))
    assert "s3cr3t-value-123" not in everything  # names only, never values
    missing = taomake(built, "provenance", "results/small-s1/specs/train.yaml")
    assert missing.returncode == 2 and "no provenance recorded" in missing.stderr


def dry_run_jobs(folder: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-n", "--cores", "1"], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0]: int(line.split()[1]) for line in table.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_deploy_chain_only_on_gpu_hardware(tmp_path):
    gpu = tmp_path / "gpu"
    make_project(gpu, variant("int8_engine").replace("    kind: local", "    kind: docker"))
    jobs = dry_run_jobs(gpu)
    assert jobs["gen_trt_engine_int8"] == 1 and jobs["trt_evaluate"] == 1
    assert jobs["trt_inference"] == 1
    spec = (gpu / "results/base/specs/gen_trt_engine.yaml").read_text()
    assert ".int8.b1-2-4." in spec and ".calib.bin" in spec  # keyed by precision/profile/image
    cpu = tmp_path / "cpu"
    make_project(cpu)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-n", "--cores", "1"], cwd=cpu, capture_output=True, text=True)
    assert "gen_trt_engine" not in proc.stdout and "trt_evaluate" not in proc.stdout
    assert proc.stderr.count("TensorRT targets left out") == 1


def test_int8_calibration_images_are_inputs_of_the_engine(tmp_path):
    """An archived calibration source is staged for the engine job (it used to be left out and
    the build failed), and a local one is hashed into the engine's inputs (changed images
    rebuild the engine)."""
    import tarfile

    from taomake.compiler.layout import dataset_paths

    text = variant("int8_engine").replace("    kind: local", "    kind: docker")
    make_project(tmp_path / "local", text)
    spec = compile_project(load_project(tmp_path / "local/project.yaml"))["base"].specs[
        "gen_trt_engine"].data
    assert dataset_paths(spec) == ["results/_data/train-0-images/images"]  # the same images
    archived = tmp_path / "archived"
    assert text.count("  calibration:\n    images: data/shapes/train/images") == 1
    make_project(archived, text.replace("  calibration:\n    images: data/shapes/train/images",
                                        "  calibration:\n    images: calib.tar"))
    with tarfile.open(archived / "calib.tar", "w") as tar:
        tar.add(REPO / "data/shapes/train/images", arcname="images")
    jobs = dry_run_jobs(archived)
    assert jobs["stage_data"] == 1 and jobs["gen_trt_engine_int8"] == 1, jobs


def test_snakemake_report_has_the_plots_with_captions(built, tmp_path):
    html = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "--report", str(html)], cwd=built, capture_output=True, text=True,
                          timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = html.read_text()
    for needle in ("curves.png", "accuracy_latency.png", "sweep_tuned.png", "Training",
                   "Deployment", "Sweeps", "validation mAP, training loss"):
        assert needle in text, needle


HALVING = """
sweep:
  method: successive_halving
  trials: 4
  eta: 2
  min_epochs: 1
  parameters:
    train.optim.lr: {min: 0.0001, max: 0.001, log: true}
"""


def halving_project(folder: Path) -> Path:
    text = fake_project_text(", FAKE_TAO_SCORE_BY_LR").replace("  epochs: 2", "  epochs: 4")
    return make_project(folder, text + HALVING)


def trained_epochs(folder: Path, trial: str) -> list[int]:
    status = folder / f"results/{trial}/train/status.json"
    return [json.loads(line)["epoch"] for line in status.read_text().splitlines()
            if '"epoch"' in line]


def test_successive_halving_promotes_and_continues(tmp_path):
    folder = tmp_path / "sh"
    halving_project(folder)
    env = {"FAKE_TAO_SCORE_BY_LR": "1"}
    snakemake(folder, env=env)
    lp = load_project(folder / "project.yaml")
    sweep = lp.sweeps["base"]
    assert sweep.rungs == [1, 2, 4]
    by_lr = sorted(sweep.trials, key=lambda t: -sweep.trials[t]["train.optim.lr"])
    rung0 = json.loads((folder / "results/base/sweep/rung0.json").read_text())
    rung1 = json.loads((folder / "results/base/sweep/rung1.json").read_text())
    assert len(rung0["scores"]) == 4 and rung0["promoted"] == by_lr[:2]
    assert rung1["promoted"] == by_lr[:1]
    best = json.loads((folder / "results/base/sweep/best.json").read_text())
    assert best["winner"] == by_lr[0] and best["budget"] == {"train.num_epochs": 4}
    # every epoch trained exactly once: promoted trials continued, never restarted
    assert trained_epochs(folder, by_lr[0]) == [0, 1, 2, 3]
    assert trained_epochs(folder, by_lr[1]) == [0, 1]
    assert trained_epochs(folder, by_lr[3]) == [0]
    starts = [c for c in calls(folder) if c[0] == "train"]
    assert len(starts) == 4 + 2 + 1  # rung 0, rung 1, the finalist's full training
    with Image.open(folder / "results/report/sweep_base_rungs.png") as im:
        im.verify()
    snakemake(folder, env=env)
    assert calls(folder) == []  # a finished sweep reruns nothing


def test_successive_halving_interrupted_mid_rung_resumes(tmp_path):
    import signal
    import time

    from tests.func.test_build import SNAKEMAKE

    folder = tmp_path / "sh"
    halving_project(folder)
    env = {**os.environ, "FAKE_TAO_SCORE_BY_LR": "1", "FAKE_TAO_EPOCH_SECONDS": "1.5",
           "FAKE_TAO_CALLS": str(folder / "calls.txt")}
    proc = subprocess.Popen([*SNAKEMAKE], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    rung1 = folder / "results/base/sweep/rung0.json"
    deadline = time.monotonic() + 120
    while not rung1.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rung1.exists(), "rung 0 never finished"
    time.sleep(1.0)  # inside rung 1 now
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)
    assert not (folder / "results/base/sweep/rung1.json").exists()
    env.pop("FAKE_TAO_EPOCH_SECONDS")
    done = subprocess.run([*SNAKEMAKE], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((folder / "results/base/sweep/best.json").read_text())
    assert trained_epochs(folder, best["winner"]) == [0, 1, 2, 3]  # resumed, nothing redone


def test_deploy_jobs_run_in_the_deploy_image_with_one_gpu_on_every_runner(tmp_path):
    from dataclasses import replace

    from taomake.compiler.actions import ACTIONS

    from taomake.jobs import make_job
    from taomake.runners.apptainer import ApptainerRunner, apptainer_argv
    from taomake.runners.container_env import container_env
    from taomake.runners.docker import DockerRunner, User
    from taomake.runners.pyxis import PyxisRunner, pyxis_argv

    make_project(tmp_path, variant("int8_engine").replace("    kind: local", "    kind: docker"))
    plan = load_plan(tmp_path / "project.yaml")  # what the jobs read
    compiled = plan.experiments["base"]
    p = plan.job_settings("base")
    runner = DockerRunner()
    engine = compiled.specs["gen_trt_engine"].data["gen_trt_engine"]["trt_engine"]
    for action in ("gen_trt_engine", "trt_evaluate", "trt_inference"):
        spec = compiled.specs[action]
        job_spec = tmp_path / f"results/base/{action}/.taomake/job-{action}.yaml"
        job = make_job(p, tmp_path, compiled, "base", ACTIONS[action], spec.data, job_spec)
        kw = runner.create_kwargs(job, User(1000, 1000), {})
        assert kw["image"] == p.tao.deploy_image_ref and kw["image"].endswith("-deploy")
        assert kw["command"][:2] == ["rtdetr", ACTIONS[action].subcommand]
        [gpus] = kw["device_requests"]
        assert gpus["DeviceIDs"] == ["0"]  # engines and TRT runs use one GPU
        mounted = {Path(k): v["mode"] for k, v in kw["volumes"].items()}
        needed = (tmp_path / ("results/base/export/model.onnx" if action == "gen_trt_engine"
                              else engine))
        assert any(needed.is_relative_to(m) for m in mounted), (action, mounted)
        # the same job through apptainer and pyxis: the deploy image's converted file, 1 GPU
        sif = ApptainerRunner(tmp_path / "images").image(job)
        assert sif.endswith("-deploy.sif") and sif != ApptainerRunner(
            tmp_path / "images").image(replace(job, image=p.tao.pytorch_image_ref))
        argv = apptainer_argv(job, sif, env=container_env(job, "u"))
        assert argv[:3] == ["apptainer", "exec", "--nv"] and argv[argv.index(sif) + 1:] == \
            job.tao_argv()
        sqsh = PyxisRunner(tmp_path / "images").image(job)
        argv = pyxis_argv(job, sqsh, env_names=["HOME"])
        assert argv[:4] == ["srun", "--nodes=1", "--ntasks=1", "--gpus-per-node=1"]
        assert f"--container-image={sqsh}" in argv and sqsh.endswith("-deploy.sqsh")


def test_tao_on_cpu_uses_the_threads_snakemake_gives_the_job(tmp_path):
    """CPU training takes every core Snakemake may use and runs alone; other actions take
    one each; the parity check (latency) runs alone; `taomake run` hands the job's threads to
    TAO (OMP_NUM_THREADS, and OMP_WAIT_POLICY when set), on CPU only."""
    from taomake.compiler.actions import ACTIONS

    from taomake.jobs import make_job

    folder = tmp_path / "cpu"
    make_project(folder, fake_project_text().replace("  opset: 17\n  parity: false\n",
                                                     "  opset: 17\n"))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                          "-n", "--cores", "2"], cwd=folder, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    threads = dict(re.findall(r"^rule (\w+):\n(?:    (?!threads).*\n)*    threads: (\d+)",
                              out.stdout + out.stderr, re.M))
    assert threads == {"train": "2", "onnx_parity": "2"}, threads  # others: 1 (not shown)

    plan = load_plan(folder / "project.yaml")
    e, settings = plan.experiments["base"], plan.job_settings("base")
    spec = e.specs["train"]
    job = make_job(settings, folder, e, "base", ACTIONS["train"], spec.data,
                   folder / "job.yaml", environ={"OMP_NUM_THREADS": "2",
                                                 "OMP_WAIT_POLICY": "passive"})
    assert job.extra_env["OMP_NUM_THREADS"] == "2" == job.extra_env["MKL_NUM_THREADS"]
    assert job.extra_env["OMP_WAIT_POLICY"] == "PASSIVE"  # asked for by the user's environment
    job = make_job(settings, folder, e, "base", ACTIONS["train"], spec.data,
                   folder / "job.yaml", environ={"OMP_NUM_THREADS": "2"})
    assert "OMP_WAIT_POLICY" not in job.extra_env  # torch's default unless asked for
    make_project(tmp_path / "gpu", variant("int8_engine"))
    plan = load_plan(tmp_path / "gpu/project.yaml")
    job = make_job(plan.job_settings("base"), tmp_path / "gpu", plan.experiments["base"],
                   "base", ACTIONS["train"], plan.experiments["base"].specs["train"].data,
                   tmp_path / "job.yaml", environ={"OMP_NUM_THREADS": "1",
                                                   "OMP_WAIT_POLICY": "PASSIVE"})
    assert "OMP_NUM_THREADS" not in job.extra_env  # GPU jobs keep TAO's own defaults
    assert "OMP_WAIT_POLICY" not in job.extra_env
    # several trainings (seeds): one core each, side by side
    seeds = tmp_path / "seeds"
    make_project(seeds, (folder / "project.yaml").read_text() + "seeds: [1, 2]\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                          "-n", "--cores", "2"], cwd=seeds, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    threads = re.findall(r"^rule (\w+):\n(?:    (?!threads).*\n)*    threads: (\d+)",
                         out.stdout + out.stderr, re.M)
    assert sorted(threads) == [("onnx_parity", "2")] * 2, threads

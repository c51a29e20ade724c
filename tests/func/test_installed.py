"""taomake as an installed tool: the wheel, installed into a fresh venv, used from a folder
outside the repository exactly as README says (`taomake init`, then `snakemake --cores all`
there), with the TAO test double (tests/fake_tao) as the runner's venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow]
FAKE_VENV = REPO / "tests" / "fake_tao"


def run(argv, cwd, timeout=900, env=None):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the built taomake wheel (and its dependencies) installed."""
    work = tmp_path_factory.mktemp("installed")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", REPO],
        cwd=work)
    [wheel] = (work / "dist").glob("taomake-*.whl")
    venv.create(work / "venv", with_pip=True)
    bin_ = work / "venv" / "bin"
    # --no-compile: byte-compiling every dependency at install (snakemake, boto3, pydantic ...)
    # is most of the install's CPU; the few modules these tests import compile on first use.
    # [slurm]: a cluster user's install (`--profile profiles/slurm` needs the executor)
    run([bin_ / "pip", "install", "-q", "--no-compile", f"{wheel}[slurm]"], cwd=work)
    # another distribution with a top-level `compiler` package, as any project may have
    other = work / "other"
    (other / "compiler").mkdir(parents=True)
    (other / "compiler" / "__init__.py").write_text('OWNER = "someone else"\n')
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "other-compiler"\nversion = "1.0"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["compiler"]\n')
    run([bin_ / "pip", "install", "-q", "--no-compile", other], cwd=work)
    return bin_


def test_the_wheel_owns_one_import_name_and_shares_a_venv_with_another_compiler(installed):
    """Installed, taomake's compiler is `taomake.compiler`: another project's top-level
    `compiler` (installed after it) neither breaks taomake nor is overwritten by it."""
    site = Path(run([installed / "python", "-c", "import taomake; print(taomake.__file__)"],
                    cwd=installed).strip()).parent.parent
    record = next(site.glob("taomake-*.dist-info")) / "RECORD"
    top = {line.split("/", 1)[0].split(",", 1)[0] for line in record.read_text().splitlines()}
    assert top - {".."} == {"taomake", record.parent.name}, top  # "..": the bin/ script
    out = run([installed / "python", "-c",
               "import compiler, taomake.compiler.plan as p, taomake.compiler.actions as a; "
               "print(compiler.OWNER, p.__name__, len(a.ACTIONS))"], cwd=installed)
    assert out.split()[:3] == ["someone", "else", "taomake.compiler.plan"], out


def test_wheel_holds_the_workflow_and_no_repository_paths(installed):
    out = run([installed / "taomake", "snakefile"], cwd=installed)
    snakefile = Path(out.strip())
    assert snakefile.is_file() and "site-packages" in str(snakefile), snakefile
    assert not str(snakefile).startswith(str(REPO))
    for profile in ("slurm", "workstation"):
        folder = Path(run([installed / "taomake", "snakefile", "--profile", profile],
                          cwd=installed).strip())
        assert (folder / "config.yaml").is_file() and "site-packages" in str(folder)


@pytest.fixture(scope="module")
def built(installed, tmp_path_factory):
    """README's "Use it in your own project": sample data, init, build; (folder, env)."""
    taomake = installed / "taomake"
    work = tmp_path_factory.mktemp("outside")
    run([taomake, "sample-data", "data", "--train", "32", "--val", "8", "--test", "8",
         "--infer", "4"], cwd=work)
    out = run([taomake, "init", "data/train/annotations.json", "data/train/images", "-o",
               "proj/project.yaml", "--preset", "cpu"], cwd=work)
    assert "cd proj && snakemake --cores all" in out, out
    assert "validation split: " in out and "test split: " in out, out  # data/val, data/test
    proj = work / "proj"
    assert (proj / "Snakefile").is_file() and (proj / "profiles/slurm/config.yaml").is_file()
    # the fake TAO, 2 epochs (init's CPU project runs the real TAO for its time budget)
    text = (proj / "project.yaml").read_text()
    text = text.replace("    kind: local", f"    kind: local\n    local: {{venv: {FAKE_VENV}}}")
    text = re.sub(r"\n  epochs: \d+ ", "\n  epochs: 2 ", text)
    text = re.sub(r"\n    steps: \[\d+\]", "\n    steps: [1]", text)
    (proj / "project.yaml").write_text(text + "\nexport:\n  parity: false\n")
    env = {**os.environ, "PATH": f"{installed}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    run([taomake, "validate"], cwd=proj, env=env)
    out = run([installed / "snakemake", "--cores", "2"], cwd=proj, env=env)
    assert (proj / "results/base/train/model.pth").is_file(), out[-3000:]
    return proj, env


def test_init_then_snakemake_in_a_folder_outside_the_repository(installed, built):
    proj, env = built
    assert (proj / "results/base/export/model.onnx").is_file()
    assert (proj / "results/report/summary.md").is_file()
    out = run([installed / "snakemake", "--cores", "2"], cwd=proj, env=env)
    assert "Nothing to be done" in out, out[-2000:]


def test_a_cluster_users_install_builds_with_the_slurm_profile(installed, built, slurm_cluster):
    """`pip install 'taomake[slurm]'` and `--profile profiles/slurm` (the copy `taomake init`
    wrote) in a folder outside the repository: the training runs as a SLURM job (before:
    the plugin was only in the dev extra and Snakemake said "invalid choice: 'slurm'")."""
    import shutil

    proj, env = built
    copy = proj.parent / "cluster"  # beside it: the project reads ../data
    shutil.copytree(proj, copy, symlinks=True, ignore=shutil.ignore_patterns("results",
                                                                             ".snakemake"))
    text = (copy / "project.yaml").read_text()
    slurm = (f"  slurm: {{partition: debug, account: {slurm_cluster}, cpus_per_gpu: 1, "
             "mem_mb_per_gpu: 1000, time_minutes: 10, eval_time_minutes: 5}\n")
    (copy / "project.yaml").write_text(text.replace("hardware:\n", "hardware:\n" + slurm, 1))
    assert "partition: debug" in (copy / "project.yaml").read_text()
    out = run([installed / "snakemake", "--profile", "profiles/slurm",
               "results/base/train/curve.csv"], cwd=copy, env=env)
    assert "has been submitted with SLURM jobid" in out, out[-3000:]
    assert (copy / "results/base/train/curve.csv").is_file()


def test_setup_tao_cpu_from_the_installed_tool(installed, tao_venv):
    """`taomake setup tao-cpu` of the installed wheel finds its requirements and compat layer
    and accepts the TAO venv that make test built (same requirements: nothing reinstalled)."""
    out = run([installed / "taomake", "setup", "tao-cpu", "--check-only", "--venv", tao_venv],
              cwd=installed)
    assert "compat_hook=True" in out, out[-2000:]


def test_report_renders_in_a_browser_with_its_plots(installed, built, chromium):
    """`snakemake --report report.html` (the command Snakemake users expect), opened in
    headless Chromium: the page renders, each result category lists taomake's figures, and
    each figure, opened, is an image the browser decoded."""
    from selenium.webdriver.common.by import By

    proj, env = built
    run([installed / "snakemake", "--report", "report.html"], cwd=proj, env=env)
    chromium.get((proj / "report.html").as_uri())
    wait_for = _waiter(chromium)
    wait_for(lambda: chromium.find_elements(By.XPATH, "//*[text()='Training']"))
    errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    seen = {}
    for category in ("Training", "Deployment"):
        chromium.get((proj / "report.html").as_uri())
        wait_for(lambda c=category: chromium.find_elements(By.XPATH, f"//*[text()='{c}']"))
        chromium.find_element(By.XPATH, f"//*[text()='{category}']").click()
        rows = wait_for(lambda: chromium.find_elements(By.XPATH, "//td[contains(text(),'.png')]"))
        for name in [row.text for row in rows]:
            cell = chromium.find_element(By.XPATH, f"//td[text()='{name}']")
            cell.find_element(By.XPATH, "./..").find_elements(By.TAG_NAME, "a")[0].click()
            stem = Path(name).name
            image = wait_for(lambda s=stem: chromium.find_elements(
                By.CSS_SELECTOR, f"img[src*='filename={s}']"))[0]
            width = wait_for(lambda i=image: chromium.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", i))
            seen[name] = width
    assert {"results/report/curves.png", "results/report/accuracy_latency.png"} <= set(seen)
    assert all(width > 200 for width in seen.values()), seen


def _waiter(driver, timeout=30.0):
    """Poll `probe()` until it returns something truthy (the report is a JavaScript app)."""
    import time

    def wait_for(probe):
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            assert time.monotonic() < deadline, f"page never showed it: {driver.page_source[:500]}"
            time.sleep(0.2)

    return wait_for

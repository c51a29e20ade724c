# taomake: build a TAO RT-DETR project.
#   snakemake --cores all                         # everything project.yaml enables
#   snakemake --cores all results/base/export/model.onnx   # one artifact
#   snakemake --config project=other.yaml ...     # another project file (its folder is the workdir)
from snakemake.utils import min_version

min_version("9.0")


include: "rules/plan.smk"
include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/images.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/inference.smk"
include: "rules/export.smk"
include: "rules/quantize.smk"
include: "rules/deploy.smk"
include: "rules/sweep.smk"
include: "rules/report.smk"


# Bookkeeping that would wait longer in a cluster's queue than it takes: run where Snakemake
# runs, never as a SLURM job (a marker's touch, the checkpoint hand-off's hard link)
localrules:
    runtime_ready,
    select_checkpoint,


rule all:
    default_target: True
    input:
        all_targets(),

# Training (or distillation) and the checkpoint handoff.


rule train:
    input:
        unpack(tao_inputs("train", checks=("train", "val"), gate=halving_gate)),
    wildcard_constraints:
        exp=exps_with("train"),
    output:
        curve=f"{R}/{{exp}}/train/curve.csv",
        run=f"{R}/{{exp}}/train/run.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/train.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/train.tsv"
    resources:
        **resources_for("train"),
    shell:
        "exec taomake run train -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule distill:
    input:
        unpack(tao_inputs("distill", checks=("train", "val"), gate=teacher_inputs)),
    wildcard_constraints:
        exp=exps_with("distill"),
    output:
        curve=f"{R}/{{exp}}/distill/curve.csv",
        run=f"{R}/{{exp}}/distill/run.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/distill.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/distill.tsv"
    resources:
        **resources_for("distill"),
    shell:
        "exec taomake run distill -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule select_checkpoint:
    input:
        run=f"{R}/{{exp}}/{{source}}/run.json",
    output:
        model=f"{R}/{{exp}}/{{source}}/model.pth",
        selection=f"{R}/{{exp}}/{{source}}/selection.json",
    params:
        project=PROJECT,
        # a change of policy re-selects; it never retrains
        policy=lambda w: EXPS[w.exp].use_checkpoint,
        metric=lambda w: EXPS[w.exp].best_metric,
    log:
        f"{R}/{{exp}}/logs/select_{{source}}.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/select_{{source}}.tsv"
    shell:
        "exec taomake select -p {params.project:q} -e {wildcards.exp} 2> {log:q}"

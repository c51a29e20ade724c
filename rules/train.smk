# Training (or distillation) and the checkpoint handoff.


rule train:
    input:
        unpack(tao_inputs("train", checks=("train", "val"), gate=halving_gate)),
    wildcard_constraints:
        exp=exps_with("train"),
    output:
        curve=L.curve("train"),
        run=L.run_record("train"),
    params:
        project=PROJECT,
    log:
        L.log("train"),
    benchmark:
        L.benchmark("train")
    threads: tao_threads("train")
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
        curve=L.curve("distill"),
        run=L.run_record("distill"),
    params:
        project=PROJECT,
    log:
        L.log("distill"),
    benchmark:
        L.benchmark("distill")
    threads: tao_threads("distill")
    resources:
        **resources_for("distill"),
    shell:
        "exec taomake run distill -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule select_checkpoint:
    input:
        run=L.run_record("{source}"),
    output:
        model=L.model("{source}"),
        selection=L.selection("{source}"),
    params:
        project=PROJECT,
        # a change of policy re-selects; it never retrains
        policy=lambda w: EXPS[w.exp].use_checkpoint,
        metric=lambda w: EXPS[w.exp].best_metric,
    log:
        L.log("select_{source}"),
    benchmark:
        L.benchmark("select_{source}")
    shell:
        "exec taomake select -p {params.project:q} -e {wildcards.exp} 2> {log:q}"

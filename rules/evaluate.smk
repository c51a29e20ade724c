# COCO evaluation of the selected checkpoint on the test split.


rule evaluate:
    input:
        unpack(tao_inputs("evaluate", checks=("test",), model=True)),
    wildcard_constraints:
        exp=exps_with("evaluate"),
    output:
        metrics=f"{R}/{{exp}}/evaluate/metrics.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/evaluate.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/evaluate.tsv"
    resources:
        **resources_for("evaluate"),
    shell:
        "exec taomake run evaluate -p {params.project:q} -e {wildcards.exp} --log {log:q}"

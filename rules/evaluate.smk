# COCO evaluation of the selected checkpoint on the test split.


rule evaluate:
    input:
        unpack(tao_inputs("evaluate", checks=("test",), model=True)),
    wildcard_constraints:
        exp=exps_with("evaluate"),
    output:
        metrics=L.metrics("evaluate"),
    params:
        project=PROJECT,
    log:
        L.log("evaluate"),
    benchmark:
        L.benchmark("evaluate")
    threads: tao_threads("evaluate")
    resources:
        **resources_for("evaluate"),
    shell:
        "exec taomake run evaluate -p {params.project:q} -e {wildcards.exp} --log {log:q}"

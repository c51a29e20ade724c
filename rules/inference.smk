# Detections (KITTI label files + annotated images) on the inference images.


rule inference:
    input:
        unpack(tao_inputs("inference", model=True)),
        classmap=lambda w: layout(w.exp).classmap,
    wildcard_constraints:
        exp=exps_with("inference"),
    output:
        summary=L.inference_summary("inference"),
    params:
        project=PROJECT,
    log:
        L.log("inference"),
    benchmark:
        L.benchmark("inference")
    threads: tao_threads("inference")
    resources:
        **resources_for("inference"),
    shell:
        "exec taomake run inference -p {params.project:q} -e {wildcards.exp} --log {log:q}"



rule detections:
    input:
        unpack(detections_inputs),
        data=data_inputs("evaluate"),
    output:
        per_class=L.per_class,
        table=L.per_class_table,
        grid=report(L.test_grid,
                    caption="../report/test_grid.rst", category="Detections"),
    params:
        project=PROJECT,
    log:
        L.log("detections"),
    shell:
        "exec taomake detections -p {params.project:q} -e {wildcards.exp} > {log:q} 2>&1"

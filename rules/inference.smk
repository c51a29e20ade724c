# Detections (KITTI label files + annotated images) on the inference images.


rule inference:
    input:
        unpack(tao_inputs("inference", model=True)),
        classmap=lambda w: layout(w.exp).classmap,
    wildcard_constraints:
        exp=exps_with("inference"),
    output:
        summary=f"{R}/{{exp}}/inference/summary.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/inference.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/inference.tsv"
    resources:
        **resources_for("inference"),
    shell:
        "exec taomake run inference -p {params.project:q} -e {wildcards.exp} --log {log:q}"



rule detections:
    input:
        unpack(detections_inputs),
        data=data_inputs("evaluate"),
    output:
        per_class=f"{R}/{{exp}}/detections/per_class.json",
        table=f"{R}/{{exp}}/detections/per_class.md",
        grid=report(f"{R}/report/test_grid_{{exp}}.png",
                    caption="../report/test_grid.rst", category="Detections"),
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/detections.log",
    shell:
        "exec taomake detections -p {params.project:q} -e {wildcards.exp} > {log:q} 2>&1"

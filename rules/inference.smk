# Detections (KITTI label files + annotated images) on the inference images.


rule inference:
    input:
        spec=spec_of("inference"),
        image=container_image_of("inference"),
        model=lambda w: model_of(w.exp),
        classmap=lambda w: layout(w.exp).classmap,
        data=data_inputs("inference"),
    output:
        summary=f"{R}/{{exp}}/inference/summary.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/inference.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/inference.tsv"
    conda:
        "../envs/taomake.yaml"
    resources:
        **resources_for("inference"),
    shell:
        "exec taomake run inference -p {params.project:q} -e {wildcards.exp} --log {log:q}"

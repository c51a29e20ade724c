# ONNX export of the selected checkpoint at the evaluation size.


rule export:
    input:
        spec=spec_of("export"),
        image=container_image_of("export"),
        model=lambda w: model_of(w.exp),
    output:
        onnx=f"{R}/{{exp}}/export/model.onnx",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/export.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/export.tsv"
    conda:
        "../envs/taomake.yaml"
    resources:
        **resources_for("export"),
    shell:
        "exec taomake run export -p {params.project:q} -e {wildcards.exp} --log {log:q}"

# Post-training quantization of the selected checkpoint (project.yaml `quantize:`).


rule quantize:
    input:
        unpack(tao_inputs("quantize", model=True)),
    output:
        model=f"{R}/{{exp}}/quantize/quantized_model_{{backend}}.pth",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/quantize_{{backend}}.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/quantize_{{backend}}.tsv"
    conda:
        "../envs/taomake.yaml"
    resources:
        **resources_for("quantize"),
    shell:
        "exec taomake run quantize -p {params.project:q} -e {wildcards.exp} --log {log:q}"

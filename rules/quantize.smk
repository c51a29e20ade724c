# Post-training quantization of the selected checkpoint (project.yaml `quantize:`).


rule quantize:
    input:
        unpack(tao_inputs("quantize", model=True)),
    wildcard_constraints:
        exp=exps_with("quantize"),
    output:
        model=f"{R}/{{exp}}/quantize/quantized_model_{{backend}}.pth",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/quantize_{{backend}}.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/quantize_{{backend}}.tsv"
    resources:
        **resources_for("quantize"),
    shell:
        "exec taomake run quantize -p {params.project:q} -e {wildcards.exp} --log {log:q}"


# The quantized model evaluated, run on the inference images and exported, beside the float
# model's results (results/<exp>/quantized/...): what quantization costs in mAP.


rule quantized_evaluate:
    input:
        unpack(tao_inputs("quantized_evaluate", checks=("test",),
                          gate=quantized_model("quantized_evaluate"))),
    wildcard_constraints:
        exp=exps_with("quantized_evaluate"),
    output:
        metrics=f"{R}/{{exp}}/quantized/evaluate/metrics.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/quantized_evaluate.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/quantized_evaluate.tsv"
    resources:
        **resources_for("quantized_evaluate"),
    shell:
        "exec taomake run quantized_evaluate -p {params.project:q} -e {wildcards.exp}"
        " --log {log:q}"


rule quantized_inference:
    input:
        unpack(tao_inputs("quantized_inference",
                          gate=quantized_model("quantized_inference"))),
    wildcard_constraints:
        exp=exps_with("quantized_inference"),
    output:
        summary=f"{R}/{{exp}}/quantized/inference/summary.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/quantized_inference.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/quantized_inference.tsv"
    resources:
        **resources_for("quantized_inference"),
    shell:
        "exec taomake run quantized_inference -p {params.project:q} -e {wildcards.exp}"
        " --log {log:q}"


rule quantized_export:
    input:
        unpack(tao_inputs("quantized_export", gate=quantized_model("quantized_export"))),
    wildcard_constraints:
        exp=exps_with("quantized_export"),
    output:
        onnx=f"{R}/{{exp}}/quantized/export/model.onnx",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/quantized_export.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/quantized_export.tsv"
    resources:
        **resources_for("quantized_export"),
    shell:
        "exec taomake run quantized_export -p {params.project:q} -e {wildcards.exp}"
        " --log {log:q}"

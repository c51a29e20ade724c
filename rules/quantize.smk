# Post-training quantization of the selected checkpoint (project.yaml `quantize:`).


rule quantize:
    input:
        unpack(tao_inputs("quantize", model=True)),
    wildcard_constraints:
        exp=exps_with("quantize"),
    output:
        model=L.quantized("{backend}"),
    params:
        project=PROJECT,
    log:
        L.log("quantize_{backend}"),
    benchmark:
        L.benchmark("quantize_{backend}")
    threads: tao_threads("quantize")
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
        metrics=L.metrics("quantized_evaluate"),
    params:
        project=PROJECT,
    log:
        L.log("quantized_evaluate"),
    benchmark:
        L.benchmark("quantized_evaluate")
    threads: tao_threads("quantized_evaluate")
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
        summary=L.inference_summary("quantized_inference"),
    params:
        project=PROJECT,
    log:
        L.log("quantized_inference"),
    benchmark:
        L.benchmark("quantized_inference")
    threads: tao_threads("quantized_inference")
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
        onnx=L.quantized_onnx,
    params:
        project=PROJECT,
    log:
        L.log("quantized_export"),
    benchmark:
        L.benchmark("quantized_export")
    threads: tao_threads("quantized_export")
    resources:
        **resources_for("quantized_export"),
    shell:
        "exec taomake run quantized_export -p {params.project:q} -e {wildcards.exp}"
        " --log {log:q}"

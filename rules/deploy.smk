# TensorRT: engine build, evaluation and inference in the deploy image (GPU projects only;
# on CPU-only hardware the compiler leaves these actions out and nothing here is requested).


rule gen_trt_engine:
    input:
        unpack(tao_inputs("gen_trt_engine")),
        onnx=f"{R}/{{exp}}/export/model.onnx",
    output:
        engine=f"{R}/{{exp}}/gen_trt_engine/model.{{precision}}.b{{profile}}.engine",
    wildcard_constraints:
        exp=exps_with("gen_trt_engine"),
        precision="fp32|fp16",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/gen_trt_engine.{{precision}}.b{{profile}}.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/gen_trt_engine.{{precision}}.b{{profile}}.tsv"
    resources:
        **resources_for("gen_trt_engine"),
    shell:
        "exec taomake run gen_trt_engine -p {params.project:q} -e {wildcards.exp} --log {log:q}"


use rule gen_trt_engine as gen_trt_engine_int8 with:
    output:
        engine=f"{R}/{{exp}}/gen_trt_engine/model.int8.b{{profile}}.engine",
        # INT8 calibration cache: its own artifact (TensorRT reuses it when present)
        calibration=f"{R}/{{exp}}/gen_trt_engine/model.int8.b{{profile}}.calib.bin",
    log:
        f"{R}/{{exp}}/logs/gen_trt_engine.int8.b{{profile}}.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/gen_trt_engine.int8.b{{profile}}.tsv"


rule trt_evaluate:
    input:
        unpack(tao_inputs("trt_evaluate")),
        engine=engine_of,
    wildcard_constraints:
        exp=exps_with("trt_evaluate"),
    output:
        metrics=f"{R}/{{exp}}/trt_evaluate/metrics.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/trt_evaluate.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/trt_evaluate.tsv"
    resources:
        **resources_for("trt_evaluate"),
    shell:
        "exec taomake run trt_evaluate -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule trt_inference:
    input:
        unpack(tao_inputs("trt_inference")),
        engine=engine_of,
        classmap=lambda w: layout(w.exp).classmap_deploy,
    wildcard_constraints:
        exp=exps_with("trt_inference"),
    output:
        summary=f"{R}/{{exp}}/trt_inference/summary.json",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/trt_inference.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/trt_inference.tsv"
    resources:
        **resources_for("trt_inference"),
    shell:
        "exec taomake run trt_inference -p {params.project:q} -e {wildcards.exp} --log {log:q}"

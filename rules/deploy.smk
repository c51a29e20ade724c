# TensorRT: engine build, evaluation and inference in the deploy image (GPU projects only;
# on CPU-only hardware the compiler leaves these actions out and nothing here is requested).


rule gen_trt_engine:
    input:
        unpack(tao_inputs("gen_trt_engine")),
        onnx=L.onnx,
    output:
        engine=L.engine_pattern(),
    wildcard_constraints:
        exp=exps_with("gen_trt_engine"),
        precision="fp32|fp16",
    params:
        project=PROJECT,
    log:
        L.log("gen_trt_engine.{precision}.b{profile}"),
    benchmark:
        L.benchmark("gen_trt_engine.{precision}.b{profile}")
    threads: tao_threads("gen_trt_engine")
    resources:
        **resources_for("gen_trt_engine"),
    shell:
        "exec taomake run gen_trt_engine -p {params.project:q} -e {wildcards.exp} --log {log:q}"


use rule gen_trt_engine as gen_trt_engine_int8 with:
    output:
        engine=L.engine_pattern("int8"),
        # INT8 calibration cache: its own artifact (TensorRT reuses it when present)
        calibration=L.calibration_cache(L.engine_pattern("int8")),
    log:
        L.log("gen_trt_engine.int8.b{profile}"),
    benchmark:
        L.benchmark("gen_trt_engine.int8.b{profile}")


rule trt_evaluate:
    input:
        unpack(tao_inputs("trt_evaluate")),
        engine=engine_of,
    wildcard_constraints:
        exp=exps_with("trt_evaluate"),
    output:
        metrics=L.metrics("trt_evaluate"),
    params:
        project=PROJECT,
    log:
        L.log("trt_evaluate"),
    benchmark:
        L.benchmark("trt_evaluate")
    threads: tao_threads("trt_evaluate")
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
        summary=L.inference_summary("trt_inference"),
    params:
        project=PROJECT,
    log:
        L.log("trt_inference"),
    benchmark:
        L.benchmark("trt_inference")
    threads: tao_threads("trt_inference")
    resources:
        **resources_for("trt_inference"),
    shell:
        "exec taomake run trt_inference -p {params.project:q} -e {wildcards.exp} --log {log:q}"

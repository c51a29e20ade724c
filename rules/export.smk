# ONNX export of the selected checkpoint at the evaluation size.


rule export:
    input:
        unpack(tao_inputs("export", model=True)),
    wildcard_constraints:
        exp=exps_with("export"),
    output:
        onnx=L.onnx,
    params:
        project=PROJECT,
    log:
        L.log("export"),
    benchmark:
        L.benchmark("export")
    threads: tao_threads("export")
    resources:
        **resources_for("export"),
    shell:
        "exec taomake run export -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule onnx_parity:
    input:
        onnx=L.onnx,
        metrics=L.metrics("evaluate"),
        data=data_inputs("evaluate"),
    output:
        parity=L.parity,
    params:
        project=PROJECT,
        tolerance=lambda w: EXPS[w.exp].parity_tolerance,  # a new tolerance re-checks
    log:
        L.log("onnx_parity"),
    benchmark:
        L.benchmark("onnx_parity")
    # every core Snakemake may use: no other job runs beside it, so the ONNX latency it
    # records is measured on an otherwise idle step (ONNX Runtime uses the cores itself)
    threads: CORES
    shell:
        "exec taomake parity -p {params.project:q} -e {wildcards.exp} --out {output.parity:q}"
        " > {log:q} 2>&1"

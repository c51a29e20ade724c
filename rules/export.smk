# ONNX export of the selected checkpoint at the evaluation size.


rule export:
    input:
        unpack(tao_inputs("export", model=True)),
    wildcard_constraints:
        exp=exps_with("export"),
    output:
        onnx=f"{R}/{{exp}}/export/model.onnx",
    params:
        project=PROJECT,
    log:
        f"{R}/{{exp}}/logs/export.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/export.tsv"
    resources:
        **resources_for("export"),
    shell:
        "exec taomake run export -p {params.project:q} -e {wildcards.exp} --log {log:q}"


rule onnx_parity:
    input:
        onnx=f"{R}/{{exp}}/export/model.onnx",
        metrics=f"{R}/{{exp}}/evaluate/metrics.json",
        data=data_inputs("evaluate"),
    output:
        parity=f"{R}/{{exp}}/export/parity.json",
    params:
        project=PROJECT,
        tolerance=lambda w: EXPS[w.exp].parity_tolerance,  # a new tolerance re-checks
    log:
        f"{R}/{{exp}}/logs/onnx_parity.log",
    benchmark:
        f"{R}/{{exp}}/benchmarks/onnx_parity.tsv"
    shell:
        "exec taomake parity -p {params.project:q} -e {wildcards.exp} --out {output.parity:q}"
        " > {log:q} 2>&1"

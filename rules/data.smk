# Data: staging of s3:// and archived sources, dataset checks, artifact upload.
# Each source's identity is recorded before the DAG is built (common.smk: refresh_data_stamps),
# so staging reruns only when a source changed, and jobs depend on content, not mtimes.


rule stage_data:
    input:
        stamp=SH.source_stamp("{source_key}"),
    output:
        marker=SH.staged_marker("{source_key}"),
    params:
        project=PROJECT,
    log:
        SH.data_log("{source_key}"),
    benchmark:
        SH.data_benchmark("{source_key}")
    shell:
        "exec taomake data -p {params.project:q} stage --from-stamp -k {wildcards.source_key}"
        " > {log:q} 2>&1"


rule data_check:
    input:
        unpack(role_inputs),
    output:
        report=SH.data_check("{check}"),
    params:
        project=PROJECT,
        exp=lambda w: CHECKS[w.check][0],
        role=lambda w: CHECKS[w.check][1],
    log:
        SH.data_log("check-{check}"),
    benchmark:
        SH.data_benchmark("check-{check}")
    shell:
        "exec taomake data -p {params.project:q} check --from-stamp -e {params.exp}"
        " -s {params.role} --json {output.report:q} > {log:q} 2>&1"


rule upload:
    input:
        upload_files,
    output:
        receipt=L.upload_receipt,
    params:
        project=PROJECT,
    log:
        L.log("upload"),
    shell:
        "exec taomake data -p {params.project:q} upload -e {wildcards.exp}"
        " --receipt {output.receipt:q} > {log:q} 2>&1"

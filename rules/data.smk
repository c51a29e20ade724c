# Data: staging of s3:// and archived sources, dataset checks, artifact upload.
# Each source's identity is recorded before the DAG is built (common.smk: refresh_data_stamps),
# so staging reruns only when a source changed, and jobs depend on content, not mtimes.


rule stage_data:
    input:
        stamp=f"{R}/_data/{{source_key}}/source.json",
    output:
        marker=f"{R}/_data/{{source_key}}/staged.json",
    params:
        project=PROJECT,
    log:
        f"{R}/_data/logs/{{source_key}}.log",
    benchmark:
        f"{R}/_data/benchmarks/{{source_key}}.tsv"
    shell:
        "exec taomake data -p {params.project:q} stage --from-stamp -k {wildcards.source_key}"
        " > {log:q} 2>&1"


rule data_check:
    input:
        unpack(role_inputs),
    output:
        report=f"{R}/_data/checks/{{check}}.json",
    params:
        project=PROJECT,
        exp=lambda w: CHECKS[w.check][0],
        role=lambda w: CHECKS[w.check][1],
    log:
        f"{R}/_data/logs/check-{{check}}.log",
    benchmark:
        f"{R}/_data/benchmarks/check-{{check}}.tsv"
    shell:
        "exec taomake data -p {params.project:q} check --from-stamp -e {params.exp}"
        " -s {params.role} --json {output.report:q} > {log:q} 2>&1"


rule upload:
    input:
        lambda w: [p for files in upload_files(w.exp).values() for p in files],
    output:
        receipt=L.upload_receipt,
    params:
        project=PROJECT,
    log:
        L.log("upload"),
    shell:
        "exec taomake data -p {params.project:q} upload -e {wildcards.exp}"
        " --receipt {output.receipt:q} > {log:q} 2>&1"

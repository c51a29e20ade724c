# Sweeps: each trial is an experiment `<exp>.tNNN` that trains (rules/train.smk); the winner
# is chosen once every trial has trained, and only then are its evaluation, export and
# inference built (a Snakemake checkpoint: the DAG learns the winner from best.json).
# Successive halving trains trials in rungs of growing epochs: a rung's decision (a
# checkpoint) promotes the best 1/eta, whose next rung resumes from their checkpoints; the
# last rung is the trial's ordinary full training.


rule sweep_rung_train:
    input:
        unpack(tao_inputs("train", checks=("train", "val"), gate=rung_inputs)),
    wildcard_constraints:
        exp=exps_with("train"),
    output:
        rung=L.rung_record("{rung}"),
    params:
        project=PROJECT,
        epochs=lambda w: sweep_of(w.exp)["rungs"][int(w.rung)],
    log:
        L.log("train.rung{rung}"),
    benchmark:
        L.benchmark("train.rung{rung}")
    threads: tao_threads("train")
    resources:
        **resources_for("train"),
    shell:
        "exec taomake run train -p {params.project:q} -e {wildcards.exp} --log {log:q}"
        " --epochs {params.epochs} --rung-out {output.rung:q}"


checkpoint sweep_rung:
    input:
        lambda w: [layout(t).rung_record(w.rung) for t in rung_survivors(w.sweep, int(w.rung))],
    output:
        decision=S.sweep_rung("{rung}"),
    params:
        project=PROJECT,
    log:
        S.log("sweep_rung{rung}"),
    shell:
        "exec taomake sweep-rung -p {params.project:q} --sweep {wildcards.sweep}"
        " --rung {wildcards.rung} --out {output.decision:q} > {log:q} 2>&1"


checkpoint sweep_best:
    input:
        sweep_finalists,
    output:
        best=S.sweep_best,
    params:
        project=PROJECT,
    log:
        S.log("sweep_best"),
    shell:
        "exec taomake sweep-best -p {params.project:q} --sweep {wildcards.sweep}"
        " --out {output.best:q} > {log:q} 2>&1"


rule sweep_done:
    input:
        best=S.sweep_best,
        winner=winner_artifacts,
    output:
        done=S.sweep_winner,
    log:
        S.log("sweep_done"),
    shell:
        # the winner's artifacts exist now; winner.json is the sweep's own up-to-date marker
        "cp {input.best:q} {output.done:q} 2> {log:q}"

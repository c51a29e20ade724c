# The project report: tables (CSV, Markdown, LaTeX) and plots, also shown by
# `snakemake --report report.html`.


rule report:
    input:
        report_inputs(),
    output:
        csv=f"{R}/report/results.csv",
        summary=f"{R}/report/summary.csv",
        md=f"{R}/report/summary.md",
        tex=f"{R}/report/summary.tex",
        curves=report(f"{R}/report/curves.png", caption="../report/curves.rst",
                      category="Training"),
        latency=report(f"{R}/report/accuracy_latency.png",
                       caption="../report/accuracy_latency.rst", category="Deployment"),
        sweeps=[report(f"{R}/report/sweep_{name}.png", caption="../report/sweep.rst",
                       category="Sweeps") for name in SWEEPS],
        rungs=[report(f"{R}/report/sweep_{name}_rungs.png", caption="../report/rungs.rst",
                      category="Sweeps") for name in SWEEPS if SWEEPS[name]["rungs"]],
    params:
        project=PROJECT,
    log:
        f"{R}/logs/report.log",
    shell:
        "exec taomake report -p {params.project:q} > {log:q} 2>&1"

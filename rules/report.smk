# The project report: tables (CSV, Markdown, LaTeX) and plots, also shown by
# `snakemake --report report.html`.


rule report:
    input:
        report_inputs(),
    output:
        csv=SH.report_results,
        summary=SH.report_summary_csv,
        md=SH.report_summary,
        tex=SH.report_latex,
        curves=report(SH.report_curves, caption="../report/curves.rst", category="Training"),
        latency=report(SH.report_accuracy_latency,
                       caption="../report/accuracy_latency.rst", category="Deployment"),
        sweeps=[report(SH.sweep_plot(name), caption="../report/sweep.rst",
                       category="Sweeps") for name in SWEEPS],
        rungs=[report(SH.rungs_plot(name), caption="../report/rungs.rst",
                      category="Sweeps") for name in SWEEPS if SWEEPS[name]["rungs"]],
    params:
        project=PROJECT,
    log:
        SH.log("report"),
    shell:
        "exec taomake report -p {params.project:q} > {log:q} 2>&1"

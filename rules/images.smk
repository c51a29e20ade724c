# Container images for the apptainer (.sif) and pyxis (.sqsh) runners, converted once from the
# registry before any TAO job needs them (TAO-FACTS §11: never pull inside a GPU job).  TAO rules
# depend on a runtime marker (container_image_of in common.smk) whose rule depends on the image
# for those runners only.


rule runtime_ready:
    input:
        image=runtime_image,
    output:
        marker=f"{R}/.taomake/runtime/{{exp}}.{{flavor}}.ready",
    wildcard_constraints:
        flavor="pytorch|deploy",
    log:
        f"{R}/logs/runtime/{{exp}}.{{flavor}}.log",
    benchmark:
        f"{R}/benchmarks/runtime/{{exp}}.{{flavor}}.tsv"
    conda:
        "../envs/taomake.yaml"
    shell:
        "touch {output.marker:q} 2> {log:q}"


if IMAGE_FILES:

    rule container_image:
        output:
            image="{image}",
        wildcard_constraints:
            image="|".join(re.escape(path) for path in IMAGE_FILES),
        params:
            convert=image_conversion,
        log:
            f"{R}/logs/images/{{image}}.log",
        resources:
            gpu=0,  # a CPU job: conversion never occupies a GPU
        conda:
            "../envs/taomake.yaml"
        shell:
            "mkdir -p \"$(dirname {output.image:q})\" && rm -f {output.image:q}.part && "
            "{params.convert} > {log:q} 2>&1 && mv {output.image:q}.part {output.image:q}"

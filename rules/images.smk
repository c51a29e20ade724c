# Container images for the apptainer (.sif) and pyxis (.sqsh) runners, converted once from the
# registry before any TAO job needs them (docs/tao-notes.md §11: never pull inside a GPU job).  TAO rules
# depend on a runtime marker (tao_inputs in common.smk) whose rule depends on the image for
# those runners only; they take it as `ancient()`, so a re-made marker (after switching runner)
# reruns no TAO job while the image is still built first.


rule runtime_ready:
    input:
        image=runtime_image,
    output:
        marker=SH.runtime_marker("{runtime}", "{flavor}"),
    wildcard_constraints:
        runtime="|".join(map(re.escape, sorted(set(RUNTIME_OF.values())))),
        flavor="pytorch|deploy",
    log:
        SH.log("runtime/{runtime}.{flavor}"),
    benchmark:
        SH.benchmark("runtime/{runtime}.{flavor}")
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
            SH.log("images/{image}"),
        resources:
            gpu=0,  # a CPU job: conversion never occupies a GPU
        shell:
            "mkdir -p \"$(dirname {output.image:q})\" && rm -f {output.image:q}.part && "
            "{params.convert} > {log:q} 2>&1 && mv {output.image:q}.part {output.image:q}"

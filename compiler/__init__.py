"""taomake's compiler: project.yaml -> validated TAO RT-DETR specs.  Pure: no processes,
containers or network; reads the project's files and writes specs.

    lp = load_project("project.yaml")       # LoadedProject (raises ProjectError, exit 2)
    compiled = compile_project(lp)          # {experiment: CompiledExperiment}
    for c in compiled.values():
        write_experiment(lp.root, c)        # only files whose content changed

Names are imported lazily so that light modules (`taomake.compiler.plan`,
`taomake.compiler.layout`) do not pay for pydantic/jinja/jsonschema: Snakemake imports them on
every invocation.
"""

from importlib import import_module

_EXPORTS = {
    "CompiledExperiment": "compile", "CompiledSpec": "compile",
    "compile_experiment": "compile", "compile_project": "compile",
    "ProjectError": "errors", "TaomakeError": "errors",
    "LoadedProject": "load", "load_project": "load", "load_project_text": "load",
    "diff_experiment": "writer", "write_experiment": "writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'taomake.compiler' has no attribute {name!r}")

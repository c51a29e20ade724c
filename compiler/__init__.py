"""taomake's compiler: project.yaml -> validated TAO RT-DETR specs.  Pure: no processes,
containers or network; reads the project's files and writes specs.

    lp = load_project("project.yaml")       # LoadedProject (raises ProjectError, exit 2)
    compiled = compile_project(lp)          # {experiment: CompiledExperiment}
    for c in compiled.values():
        write_experiment(lp.root, c)        # only files whose content changed
"""

from .compile import CompiledExperiment, CompiledSpec, compile_experiment, compile_project
from .errors import ProjectError, TaomakeError
from .load import LoadedProject, load_project, load_project_text
from .writer import diff_experiment, write_experiment

__all__ = [
    "CompiledExperiment", "CompiledSpec", "LoadedProject", "ProjectError", "TaomakeError",
    "compile_experiment", "compile_project", "diff_experiment", "load_project",
    "load_project_text", "write_experiment",
]

"""taomake's CPU compatibility hook for NVIDIA TAO PyTorch (installed only in the TAO CPU venv).

Loaded at interpreter start by `taomake_tao_cpu_compat.pth`.  At start it only puts a small
finder on `sys.meta_path` (stdlib `sys`/`os` only: nothing heavy is imported).  The finder
patches the modules below right after they are first imported; the first four patches act
only when no CUDA device is present (checked when it matters, not at start):

* `pytorch_lightning.trainer.trainer` (and `lightning.pytorch.trainer.trainer`): the
  `Trainer` constructor turns `accelerator="gpu"`/`"cuda"` into `accelerator="cpu",
  devices=1`.  TAO hard-codes the GPU accelerator for train/evaluate/inference
  (docs/tao-notes.md §4, §9); nothing else is changed.
* `torch`: `torch.ops.load_library` tolerates a failed load of TAO's CUDA-only
  `MultiScaleDeformableAttention*.so` (that file name only).  TAO's CPU forward pass uses
  the pure-PyTorch path and never calls the op (docs/tao-notes.md §4, §9).  Any other library
  error, and any error while CUDA is present, is raised as before.
* `nvidia_tao_pytorch.core.distributed.validator`: `validate_configs` (TAO's multi-node check
  of WORLD_SIZE, NODE_RANK, MASTER_ADDR/PORT and NUM_GPU_PER_NODE) counts the CPU as one
  device, so `NUM_GPU_PER_NODE=1` passes instead of failing `1 <= n <= cuda.device_count()`
  (0) and silently falling back to a single-node run (docs/tao-notes.md, multi-node).  Every
  other check runs unchanged; any other NUM_GPU_PER_NODE is checked as before.
* `nvidia_tao_pytorch.core.distributed.comm`: with more than one process, `all_gather` moves
  its byte buffers to `'cuda'` (hard-coded); on CPU it gathers with
  `torch.distributed.all_gather_object` instead (same result: one object per rank, gloo).
  `get_local_size` (`torch.cuda.device_count()`, 0 on CPU) answers 1: one CPU process per
  node, as one GPU per node would.

Two more patches change no result, only start-up time, so they act with or without CUDA:

* `nvidia_tao_pytorch.core.entrypoint`: `get_subtasks` (what `rtdetr <action>` runs first,
  to list the actions) imports every script module of the network (train, evaluate, export,
  inference, distill, quantize: Lightning, modelopt, transformers ...) only to read each
  one's `__file__`, then starts the chosen one in a new process (torchrun) that imports it
  again.  Here it finds the scripts' files without running them (`importlib.util.find_spec`):
  the same subtask table, about 9 CPU-seconds less per TAO job (docs/tao-notes.md §2.2).
* `nvidia_tao_pytorch.core.quantization`: importing it (every RT-DETR script does, for
  `create_quantized_model_from_config`) imports the quantization backends for their
  registration side effect (`quantizer.py`: `importlib.import_module(".backends")` in a
  `try` that ignores failures): ModelOpt with its Hugging Face plugins, ModelOpt ONNX and
  TAO's torchao backend, about 2 CPU-seconds, in every train/evaluate/export/inference job
  that never quantizes.  Here that one import is put off until the registry is first read
  (`RegistryManager`'s get/list/is-registered/unregister/clear methods import the backends
  first, ignoring failures as TAO does): quantize and the quantized_* jobs see the same
  registry (docs/tao-notes.md §2.2).

With a CUDA device nothing else changes.  Set TAOMAKE_TAO_CPU_COMPAT=0 to switch the hook off.
No installed NVIDIA file is edited.
"""

import os
import sys

_ENV_SWITCH = "TAOMAKE_TAO_CPU_COMPAT"
_MSDA_PREFIX = "MultiScaleDeformableAttention"
_TAG = "[taomake tao-cpu compat]"

# What was patched, for diagnostics and tests (`taomake_tao_cpu_compat.STATE`).
STATE = {"installed": False, "patched": [], "trainer_rewrites": 0, "msda_load_skipped": 0,
         "multinode_cpu_validations": 0, "cpu_all_gathers": 0, "scripts_located": 0,
         "backends_deferred": False, "backends_loaded": False}
_notified = set()


def _notice(key, text):
    """Print a one-line notice to stderr once per process."""
    if key in _notified:
        return
    _notified.add(key)
    try:
        print(f"{_TAG} {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # closed or broken stderr: never fail for a notice
        return


def cuda_present():
    """True when torch sees at least one usable CUDA device."""
    try:
        import torch
        return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)
    except Exception:
        return False


# --- patches --------------------------------------------------------------------------------

def _patch_trainer(module):
    trainer_cls = getattr(module, "Trainer", None)
    if trainer_cls is None or getattr(trainer_cls.__init__, "_taomake_cpu_compat", False):
        return
    original = trainer_cls.__init__

    def __init__(self, *args, **kwargs):
        accelerator = kwargs.get("accelerator")
        if (isinstance(accelerator, str) and accelerator.lower() in ("gpu", "cuda")
                and not cuda_present()):
            devices = kwargs.get("devices")
            kwargs["accelerator"] = "cpu"
            kwargs["devices"] = 1
            STATE["trainer_rewrites"] += 1
            _notice("trainer", f"no CUDA device: Lightning Trainer accelerator={accelerator!r} "
                               f"devices={devices!r} -> accelerator='cpu' devices=1")
        return original(self, *args, **kwargs)

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(__init__, attr, getattr(original, attr))
        except (AttributeError, TypeError):
            pass
    __init__.__wrapped__ = original  # inspect.signature() still shows Lightning's signature
    __init__._taomake_cpu_compat = True
    trainer_cls.__init__ = __init__
    STATE["patched"].append(f"{module.__name__}.Trainer.__init__")


def _patch_torch(module):
    ops_cls = type(getattr(module, "ops", None))
    original = getattr(ops_cls, "load_library", None)
    if original is None or getattr(original, "_taomake_cpu_compat", False):
        return

    def load_library(self, path):
        try:
            return original(self, path)
        except OSError as exc:
            name = os.path.basename(str(path))
            if not (name.startswith(_MSDA_PREFIX) and name.endswith(".so")) or cuda_present():
                raise
            STATE["msda_load_skipped"] += 1
            _notice("msda", f"no CUDA device: skipped loading the CUDA-only {name} "
                            f"({type(exc).__name__}); the pure-PyTorch deformable "
                            f"attention is used on CPU")
            return None

    load_library.__doc__ = original.__doc__
    load_library.__wrapped__ = original
    load_library._taomake_cpu_compat = True
    ops_cls.load_library = load_library
    STATE["patched"].append("torch.ops.load_library")


def _patch_multinode_validator(module):
    original = getattr(module, "validate_configs", None)
    if original is None or getattr(original, "_taomake_cpu_compat", False):
        return

    def validate_configs(log):
        if os.environ.get("NUM_GPU_PER_NODE", "").strip() != "1" or cuda_present():
            return original(log)
        # One process per node on CPU: run every other check with the GPU count left out.
        saved = os.environ.pop("NUM_GPU_PER_NODE")
        try:
            result = original(log)
        finally:
            os.environ["NUM_GPU_PER_NODE"] = saved
        STATE["multinode_cpu_validations"] += 1
        _notice("multinode", "no CUDA device: multi-node check counts the CPU as one device "
                             "(NUM_GPU_PER_NODE=1); one CPU process per node")
        return result

    validate_configs.__doc__ = original.__doc__
    validate_configs.__wrapped__ = original
    validate_configs._taomake_cpu_compat = True
    module.validate_configs = validate_configs
    STATE["patched"].append(f"{module.__name__}.validate_configs")


def _patch_comm(module):
    original_gather = getattr(module, "all_gather", None)
    original_local_size = getattr(module, "get_local_size", None)
    if original_gather is None or getattr(original_gather, "_taomake_cpu_compat", False):
        return

    def all_gather(data):
        if cuda_present() or module.get_world_size() == 1:
            return original_gather(data)
        import torch.distributed as dist
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, data)
        STATE["cpu_all_gathers"] += 1
        _notice("all_gather", "no CUDA device: TAO's all_gather gathers on CPU "
                              "(torch.distributed.all_gather_object)")
        return gathered

    def get_local_size():
        return original_local_size() if cuda_present() else 1

    for new, old in ((all_gather, original_gather), (get_local_size, original_local_size)):
        new.__doc__ = old.__doc__
        new.__wrapped__ = old
        new._taomake_cpu_compat = True
    module.all_gather = all_gather
    module.get_local_size = get_local_size
    STATE["patched"].append(f"{module.__name__}.all_gather")
    STATE["patched"].append(f"{module.__name__}.get_local_size")


class _ScriptLocator:
    """Stands in for `importlib` inside TAO's entrypoint while it lists a network's scripts:
    `import_module` of a module under that package answers an object with the module's
    `__name__` and `__file__` (found by `find_spec`, not executed); everything else is the
    real importlib."""

    def __init__(self, importlib, package):
        self._importlib = importlib
        self._prefix = package + "."

    def import_module(self, name, package=None):
        if package is None and name.startswith(self._prefix):
            import importlib.util
            import types
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.has_location and spec.origin:
                STATE["scripts_located"] += 1
                return types.SimpleNamespace(__name__=name, __file__=spec.origin)
        return self._importlib.import_module(name, package)

    def __getattr__(self, attr):
        return getattr(self._importlib, attr)


def _patch_entrypoint(module):
    original = getattr(module, "get_subtasks", None)
    real_importlib = getattr(module, "importlib", None)
    if (original is None or real_importlib is None
            or getattr(original, "_taomake_cpu_compat", False)):
        return

    def get_subtasks(package):
        module.importlib = _ScriptLocator(real_importlib, package.__name__)
        try:
            return original(package)
        finally:
            module.importlib = real_importlib

    get_subtasks.__doc__ = original.__doc__
    get_subtasks.__wrapped__ = original
    get_subtasks._taomake_cpu_compat = True
    module.get_subtasks = get_subtasks
    STATE["patched"].append(f"{module.__name__}.get_subtasks")


_QUANT_BACKENDS = "nvidia_tao_pytorch.core.quantization.backends"
_QUANTIZER = "nvidia_tao_pytorch.core.quantization.quantizer"
_QUANT_REGISTRY = "nvidia_tao_pytorch.core.quantization.registry"


def _defer_backends(fullname):
    """True (once) when TAO's quantizer module, while it is being imported, asks for the
    backends package: that import is answered with an ImportError, which the quantizer
    ignores (backends are optional to it), and made later by `_load_backends`."""
    if fullname != _QUANT_BACKENDS or STATE["backends_deferred"] or fullname in sys.modules:
        return False
    if f"{_QUANT_REGISTRY}.RegistryManager" not in STATE["patched"]:
        return False  # nothing would import them later
    quantizer = sys.modules.get(_QUANTIZER)
    return bool(getattr(getattr(quantizer, "__spec__", None), "_initializing", False))


def _load_backends():
    if STATE["backends_deferred"] and not STATE["backends_loaded"]:
        STATE["backends_loaded"] = True
        import importlib
        try:
            importlib.import_module(_QUANT_BACKENDS)
        except Exception:  # as TAO's quantizer: a backend that cannot load is not offered
            pass


def _patch_quant_registry(module):
    manager = getattr(module, "RegistryManager", None)
    if manager is None or getattr(manager, "_taomake_cpu_compat", False):
        return
    for name, method in list(vars(manager).items()):
        if name.startswith(("_", "register_")) or not callable(method):
            continue

        def reader(self, *args, _method=method, **kwargs):
            _load_backends()
            return _method(self, *args, **kwargs)

        reader.__name__, reader.__doc__, reader.__wrapped__ = name, method.__doc__, method
        setattr(manager, name, reader)
    manager._taomake_cpu_compat = True
    STATE["patched"].append(f"{module.__name__}.RegistryManager")


_PATCHES = {
    "torch": _patch_torch,
    "pytorch_lightning.trainer.trainer": _patch_trainer,
    "lightning.pytorch.trainer.trainer": _patch_trainer,
    "nvidia_tao_pytorch.core.distributed.validator": _patch_multinode_validator,
    "nvidia_tao_pytorch.core.distributed.comm": _patch_comm,
    "nvidia_tao_pytorch.core.entrypoint": _patch_entrypoint,
    _QUANT_REGISTRY: _patch_quant_registry,
}


# --- import machinery -----------------------------------------------------------------------

def _run_patch(name, module):
    try:
        _PATCHES[name](module)
    except Exception as exc:
        _notice(f"fail:{name}", f"could not patch {name}: {exc!r}")


def _wrap_loader(name, loader):
    """The same loader, of a subclass of its own class whose exec_module patches afterwards.

    A subclass (not a proxy) keeps isinstance checks and every other loader method intact.
    """
    base = type(loader)

    class _PatchingLoader(base):
        def exec_module(self, module):
            base.exec_module(self, module)
            _run_patch(name, module)

    _PatchingLoader.__name__ = _PatchingLoader.__qualname__ = base.__name__
    _PatchingLoader.__module__ = base.__module__
    try:
        wrapped = object.__new__(_PatchingLoader)
        wrapped.__dict__.update(loader.__dict__)
    except TypeError:
        return None
    return wrapped


class _Finder:
    """Meta path finder: for the modules in _PATCHES, delegates to the other finders and
    wraps the found loader; puts off the quantizer's import of the backends
    (`_defer_backends`); for every other name it answers None at once."""

    def find_spec(self, fullname, path=None, target=None):
        if _defer_backends(fullname):
            STATE["backends_deferred"] = True
            raise ImportError(f"{_TAG} {fullname}: imported when the registry is first read",
                              name=fullname)
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        wrapped = _wrap_loader(fullname, loader)
        if wrapped is not None:
            spec.loader = wrapped
        return spec

    def invalidate_caches(self):
        pass


def install():
    """Put the finder first on sys.meta_path (once); patch modules imported already."""
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return True
    sys.meta_path.insert(0, _Finder())
    STATE["installed"] = True
    for name in _PATCHES:
        if name in sys.modules:
            _run_patch(name, sys.modules[name])
    return True


install()

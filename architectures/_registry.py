"""One registry for every architecture of nnunet-ext (in the spirit of timm's ``register``/``create``/``list``).

A *variant* is a registered name bound to a model class and two sets of keyword arguments:

``variant_kwargs``
    what makes the variant what it is (a block type, a kernel size, a switch). They are applied whenever the
    variant is built, from its paper configuration or from nnU-Net plans.
``paper_kwargs``
    the rest of the paper's configuration (input channels, classes, stages, features, conv op, ...). They are
    used only by :func:`create`, the *default construction* (its parameter count is what ``nnunet-ext archs
    --tsv`` prints and what the papers' tables are checked against). A variant without a paper configuration
    gets a small generic 2D configuration.

:func:`create_from_plans` builds a variant adapted to nnU-Net plans: the plans' ``network_arch_init_kwargs``
(n_stages, features_per_stage, conv_op, kernel_sizes, strides, norm/dropout/nonlin ops, ...) are mapped onto the
class's constructor (keys the constructor does not take are dropped), the variant's own kwargs are applied on top,
and input channels, number of segmentation heads and deep supervision come from nnU-Net's arguments. This is what
every trainer of nnunet-ext calls in ``build_network_architecture``.

Every model class follows the dynamic_network_architectures contract: constructor
``(input_channels, ..., num_classes, ..., deep_supervision)``, a ``.decoder.deep_supervision`` switch, a static
``initialize``, ``compute_conv_feature_map_size(input_size)``, deep-supervision outputs highest resolution first,
the same state_dict with deep supervision on and off, logits (no softmax).
"""
from __future__ import annotations

import fnmatch
import inspect
import pydoc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "ArchSpec", "UnknownArchitectureError", "register", "create", "create_from_plans", "list_architectures",
    "get_spec", "plans_arch_kwargs", "to_plans_entry", "REQ_IMPORT_KEYS", "count_parameters", "meta_model",
    "count_parameters_of",
]

#: keys of nnU-Net's ``arch_kwargs`` that hold classes written as import strings in plans files
REQ_IMPORT_KEYS = ("conv_op", "norm_op", "dropout_op", "nonlin")

# a small 2D default construction for variants that have no paper configuration
_GENERIC_2D = dict(
    input_channels=1, num_classes=3, n_stages=5, features_per_stage=[32, 64, 128, 256, 512],
    conv_op="torch.nn.Conv2d", kernel_sizes=[[3, 3]] * 5, strides=[[1, 1]] + [[2, 2]] * 4,
    n_conv_per_stage=[2] * 5, n_conv_per_stage_decoder=[2] * 4, conv_bias=True,
    norm_op="torch.nn.InstanceNorm2d", norm_op_kwargs={"eps": 1e-5, "affine": True},
    dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True},
    deep_supervision=False,
)


class UnknownArchitectureError(KeyError, ValueError):
    """Raised for a name that is not registered; its message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ArchSpec:
    name: str
    cls: type
    description: str
    family: str
    variant_kwargs: Dict[str, Any] = field(default_factory=dict)
    paper_kwargs: Optional[Dict[str, Any]] = None
    #: tiny overrides the registry test may apply on top of plans (e.g. a minimum width); rarely needed
    test_kwargs: Dict[str, Any] = field(default_factory=dict)

    @property
    def has_paper_config(self) -> bool:
        return self.paper_kwargs is not None

    def default_kwargs(self) -> Dict[str, Any]:
        base = dict(_GENERIC_2D) if self.paper_kwargs is None else dict(self.paper_kwargs)
        return _resolve_imports({**_accepted(self.cls, base), **self.variant_kwargs})


_REGISTRY: Dict[str, ArchSpec] = {}


def register(name: str, cls: type, *, description: str, family: Optional[str] = None,
             variant_kwargs: Optional[Dict[str, Any]] = None, paper_kwargs: Optional[Dict[str, Any]] = None,
             test_kwargs: Optional[Dict[str, Any]] = None) -> ArchSpec:
    """Register ``name`` as a variant of ``cls``. Returns the spec. Names are unique."""
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is registered already (by {_REGISTRY[name].cls.__module__})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register({name!r}): cls must be an nn.Module subclass, got {cls!r}")
    for required in ("initialize", "compute_conv_feature_map_size"):
        if not hasattr(cls, required):
            raise TypeError(f"register({name!r}): {cls.__name__} lacks {required} (dynamic_network_architectures contract)")
    spec = ArchSpec(name=name, cls=cls, description=description, family=family or cls.__module__.rsplit(".", 1)[-1],
                    variant_kwargs=dict(variant_kwargs or {}),
                    paper_kwargs=None if paper_kwargs is None else dict(paper_kwargs),
                    test_kwargs=dict(test_kwargs or {}))
    _REGISTRY[name] = spec
    return spec


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters of ``net`` (what ``nnunet-ext archs --tsv`` and the benchmark report)."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def forward_flops(net, input_shape: Sequence[int], device: str = "meta") -> int:
    """FLOPs of one forward pass of ``net`` for an input of ``input_shape`` (torch's FlopCounterMode convention:
    one multiply-add = 2 FLOPs). ``net`` must live on ``device``."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(tuple(input_shape), device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return int(fc.get_total_flops())


def list_architectures(pattern: Optional[str] = None) -> List[str]:
    """Registered names in registration order, optionally filtered by a shell-style ``pattern``."""
    names = list(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_spec(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; registered: {', '.join(list_architectures())}") from None


def create(name: str, **overrides) -> nn.Module:
    """Default construction of a variant (its paper configuration where it has one), with ``overrides``.

    Op arguments may be given as classes or as import strings (``"torch.nn.Conv3d"``), as in plans files.
    """
    spec = get_spec(name)
    kwargs = {**spec.default_kwargs(), **_resolve_imports(overrides)}
    return _initialized(spec, spec.cls(**kwargs))


def _initialized(spec: ArchSpec, model: nn.Module) -> nn.Module:
    """``model`` with the class's weight initialisation applied, except on the meta device: meta tensors have no
    values to initialise (and ``initialize`` on them would be most of the time of a meta build, docs/fast_paths.md)."""
    if not any(p.is_meta for p in model.parameters()):
        model.apply(spec.cls.initialize)
    return model


_META_MODELS: Dict[Tuple[str, str], nn.Module] = {}


def meta_model(name: str, **overrides) -> nn.Module:
    """:func:`create` ``(name, **overrides)`` on the meta device, built once per process and shared.

    Meta tensors have shapes but no storage: the paper configurations are built without allocating or initialising
    their weights. For counting parameters and inspecting structure only; the shared module must not be modified,
    and it cannot run on data.
    """
    key = (name, repr(sorted(overrides.items())))
    if key not in _META_MODELS:
        with torch.device("meta"):
            _META_MODELS[key] = create(name, **overrides)
    return _META_MODELS[key]


def count_parameters_of(name: str, **overrides) -> int:
    """Trainable parameters of :func:`create` ``(name, **overrides)``, counted on the meta device (:func:`meta_model`)."""
    return count_parameters(meta_model(name, **overrides))


def plans_arch_kwargs(name: str, arch_kwargs: Dict[str, Any], **overrides) -> Dict[str, Any]:
    """Constructor kwargs of variant ``name`` adapted to nnU-Net plans' ``arch_kwargs`` (op strings resolved).

    Keys of ``arch_kwargs`` the class does not take are dropped (e.g. ``n_conv_per_stage`` for a network whose
    blocks are fixed by its paper); the variant's kwargs and then ``overrides`` are applied on top.
    """
    spec = get_spec(name)
    kwargs = _accepted(spec.cls, _resolve_imports(dict(arch_kwargs)))
    kwargs.update(spec.variant_kwargs)
    kwargs.update(_resolve_imports(overrides))
    return kwargs


def create_from_plans(name: str, configuration_manager_or_arch_kwargs, num_input_channels: int,
                      num_output_channels: int, enable_deep_supervision: bool = True, **overrides) -> nn.Module:
    """Build variant ``name`` for nnU-Net plans (what our trainers' ``build_network_architecture`` does).

    ``configuration_manager_or_arch_kwargs`` is an nnU-Net ``ConfigurationManager`` or a plain ``arch_kwargs``
    dict as found in a plans file under ``architecture/arch_kwargs``.
    """
    cm = configuration_manager_or_arch_kwargs
    arch_kwargs = cm.network_arch_init_kwargs if hasattr(cm, "network_arch_init_kwargs") else cm
    spec = get_spec(name)
    kwargs = plans_arch_kwargs(name, arch_kwargs, **overrides)
    kwargs.update(input_channels=num_input_channels, num_classes=num_output_channels,
                  deep_supervision=enable_deep_supervision)
    return _initialized(spec, spec.cls(**kwargs))


def to_plans_entry(name: str, arch_kwargs: Dict[str, Any], **overrides) -> Dict[str, Any]:
    """The ``architecture`` entry of a plans configuration that names variant ``name`` directly:
    ``{"network_class_name": "module.Class", "arch_kwargs": {...}, "_kw_requires_import": [...]}``, so that
    nnU-Net's own ``get_network_from_plans`` (and the stock ``nnUNetTrainer``) can build it.
    """
    spec = get_spec(name)
    kwargs = plans_arch_kwargs(name, arch_kwargs, **overrides)
    for k in ("input_channels", "num_classes", "deep_supervision"):
        kwargs.pop(k, None)
    req = [k for k, v in kwargs.items() if isinstance(v, type)]
    serial = {k: (_import_string(v) if isinstance(v, type) else v) for k, v in kwargs.items()}
    return {"network_class_name": f"{spec.cls.__module__}.{spec.cls.__qualname__}", "arch_kwargs": serial,
            "_kw_requires_import": req}


# ---------------------------------------------------------------------------------------------------------------
def _import_string(c: type) -> str:
    return f"{c.__module__}.{c.__qualname__}"


def _resolve_imports(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(kwargs)
    for k, v in kwargs.items():
        if isinstance(v, str) and (k in REQ_IMPORT_KEYS or k.endswith("_op")):
            located = pydoc.locate(v)
            if located is None:
                raise ValueError(f"{k}={v!r} cannot be imported")
            out[k] = located
    return out


def _constructor_params(cls: type) -> Tuple[set, bool]:
    sig = inspect.signature(cls.__init__)
    names = {p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return names - {"self"}, has_var_kw


def _accepted(cls: type, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    names, var_kw = _constructor_params(cls)
    return dict(kwargs) if var_kw else {k: v for k, v in kwargs.items() if k in names}

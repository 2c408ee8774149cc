"""Architectures of nnunet-ext, one file per family, all in one registry.

>>> from nnunet_ext import architectures as A
>>> A.list_architectures()            # every registered variant
>>> net = A.create("plain_unet")       # default construction (paper configuration where there is one)
>>> net = A.create_from_plans("plain_unet", configuration_manager, 1, 3, True)   # adapted to nnU-Net plans

A family module registers its variants with :func:`register` in one function, ``_register_variants()``, called at
the end of the module when it is imported; every public module of this package is imported here, so a new family
joins the registry (and the registry-wide test) by being added as a file. The U-Net families build on one scaffold
(``_scaffold.py``: encoder = downsampling then a block per stage, deep-supervision decoder) and provide only their
blocks; every sub-block reports its feature maps as ``compute_conv_feature_map_size`` (a Python ``int``).
"""
import importlib
import pkgutil

from ._registry import (REQ_IMPORT_KEYS, ArchSpec, UnknownArchitectureError, count_parameters,
                        count_parameters_of, create, create_from_plans, forward_flops, get_spec, list_architectures, meta_model,
                        plans_arch_kwargs, register, to_plans_entry)

__all__ = ["ArchSpec", "UnknownArchitectureError", "register", "create", "create_from_plans", "list_architectures",
           "get_spec", "plans_arch_kwargs", "to_plans_entry", "REQ_IMPORT_KEYS", "count_parameters",
           "count_parameters_of", "forward_flops", "meta_model"]

# plain_unet first: it is the baseline and the first registered entry
_FAMILIES = ["plain_unet"] + sorted(m.name for m in pkgutil.iter_modules(__path__)
                                    if not m.name.startswith("_") and m.name != "plain_unet")
for _m in _FAMILIES:
    importlib.import_module(f"{__name__}.{_m}")
del _m

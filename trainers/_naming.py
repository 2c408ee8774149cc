"""Trainers by name: ``<Trainer>_<suffix>[_<suffix>...]`` builds a subclass of an exported trainer on demand.

nnU-Net names its own short schedules ``nnUNetTrainer_5epochs``; the same grammar reaches every trainer of ours
without a class written out per schedule. nnU-Net's trainer lookup does ``hasattr(module, name)`` on the modules
it finds, and :mod:`nnunet_ext.trainers` answers unknown names through a module ``__getattr__`` (PEP 562) that
parses them here. A derived class is created once, cached in :mod:`nnunet_ext.trainers` under its own name (so
``pickle`` finds it by reference in spawned workers) and is the same object for every lookup.

Suffixes are registered with :func:`register_suffix`; a suffix is one token without ``_`` matched in full by a
regular expression. It contributes ``hparams`` (attributes set on the trainer instance after nnU-Net's
``__init__``), class attributes, and/or mixin classes placed before the base in the MRO. Built in:

``<N>epochs`` / ``1epoch``   ``num_epochs = N``
``<M>iters``                 ``num_iterations_per_epoch = M``, ``num_val_iterations_per_epoch = max(1, M // 5)``
                             (nnU-Net's 250:50 ratio); for smoke tests, e.g. ``nnUNetTrainerPlainUNet_1epoch_5iters``
``save<K>``                  ``save_every = K``: ``checkpoint_latest.pth`` every K epochs (nnU-Net: 50), so that a
                             run killed and resumed with ``--c`` loses at most K epochs
``nomirror``                 nnU-Net's ``nnUNetTrainerNoMirroring``: no mirroring augmentation, no test-time mirroring
                             in the final validation and in prediction (smoke tests: 4x / 8x fewer forward passes)

Families register their own suffixes next to their trainers (e.g. ``planskernels`` in :mod:`.dmc_net`, ``fine``
in :mod:`.c2f`); a suffix's ``arch_kwargs`` class attribute is merged onto the base's. A trainer name retired in
favour of a suffix stays a trainer through :func:`register_alias`: the old name is a subclass of the suffixed class
under the old name, so model folders and checkpoints (nnU-Net stores ``trainer_name``) trained under it keep
loading, and schedules apply to it (``<OldName>_5epochs``).

Stock ``nnUNetTrainer`` is a base too (``nnUNetTrainer_5epochs_20iters``), so that a short comparison against
stock nnU-Net uses the very same schedule (nnU-Net's own ``nnUNetTrainer_5epochs`` is found first where it exists).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

#: the short schedules that are pre-built and exported (any other N works by name too)
SHORT_SCHEDULES = (1, 2, 5, 10, 20, 50, 100, 250)


@dataclass(frozen=True)
class Suffix:
    name: str
    pattern: "re.Pattern[str]"
    #: match -> (hparams, class attributes, mixins)
    build: Callable[["re.Match[str]"], Tuple[dict, dict, tuple]]
    doc: str = ""
    #: applies only to bases for which this returns True (default: all); a name with a refused suffix is no trainer
    #: (e.g. c2f's ``_fine`` on an exported ``...Fine`` trainer, which has the fine stage already)
    applies_to: Optional[Callable[[type], bool]] = None


_SUFFIXES: List[Suffix] = []


def register_suffix(name: str, pattern: str, build: Callable, doc: str = "",
                    applies_to: Optional[Callable[[type], bool]] = None) -> Suffix:
    if any(s.name == name for s in _SUFFIXES):
        raise ValueError(f"suffix {name!r} is registered already")
    if "_" in pattern.replace("\\_", ""):
        raise ValueError(f"suffix pattern {pattern!r} must not contain '_'")
    s = Suffix(name, re.compile(pattern), build, doc, applies_to)
    _SUFFIXES.append(s)
    return s


def suffixes() -> List[Suffix]:
    return list(_SUFFIXES)


def _epochs(m):
    n = int(m.group(1))
    if n < 1:
        raise ValueError(f"number of epochs must be >= 1, got {m.group(0)!r}")
    return {"num_epochs": n}, {}, ()


def _iters(m):
    n = int(m.group(1))
    if n < 1:
        raise ValueError(f"number of iterations must be >= 1, got {m.group(0)!r}")
    return {"num_iterations_per_epoch": n, "num_val_iterations_per_epoch": max(1, n // 5)}, {}, ()


register_suffix("epochs", r"(\d+)epochs?", _epochs, "num_epochs = N (nnU-Net's own naming: _1epoch, _5epochs)")
register_suffix("iters", r"(\d+)iters", _iters, "num_iterations_per_epoch = M, validation iterations M // 5")


def _save_every(m):
    k = int(m.group(1))
    if k < 1:
        raise ValueError(f"checkpoint interval must be >= 1 epoch, got {m.group(0)!r}")
    return {"save_every": k}, {}, ()


register_suffix("save", r"save(\d+)", _save_every, "save_every = K: checkpoint_latest.pth every K epochs (--c resumes)")
def _no_mirroring(m):
    """nnU-Net's own ``nnUNetTrainerNoMirroring`` as a mixin: no mirroring augmentation in training, and none at
    inference (the final validation and ``nnUNetv2_predict`` run one forward pass per patch instead of 4 (2d) or 8
    (3d)). For smoke tests of the whole pipeline on a CPU."""
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \
        nnUNetTrainerNoMirroring

    return {}, {}, (nnUNetTrainerNoMirroring,)


register_suffix("nomirror", r"nomirror", _no_mirroring,
                "nnU-Net's nnUNetTrainerNoMirroring: no mirroring in training, validation or prediction")


#: retired trainer name -> the suffixed name it stands for (:func:`register_alias`)
_ALIASES: Dict[str, str] = {}


def register_alias(old: str, canonical: str) -> None:
    """Keep the retired trainer name ``old`` as a subclass of the trainer named ``canonical`` (a suffixed name)."""
    if _ALIASES.get(old, canonical) != canonical:
        raise ValueError(f"trainer alias {old!r} is registered already (for {_ALIASES[old]!r})")
    _ALIASES[old] = canonical


def _trainer(name: str) -> type:
    """The trainer class of :mod:`nnunet_ext.trainers` for ``name`` (built by name and cached there)."""
    return importlib.import_module(__name__.rsplit(".", 1)[0]).get_trainer(name)


def parse(name: str, bases: Dict[str, type]) -> Optional[Tuple[type, List[Tuple[Suffix, "re.Match[str]"]]]]:
    """Split ``name`` into an exported base trainer and a list of matched suffixes; None if it is not such a name.
    A retired name (:func:`register_alias`) is its suffixed trainer with no further suffix, and a base itself."""
    if name in _ALIASES:
        return _trainer(_ALIASES[name]), []
    for base_name in sorted({**bases, **_ALIASES}, key=len, reverse=True):
        if not name.startswith(base_name + "_"):
            continue
        tokens = name[len(base_name) + 1:].split("_")
        matched = []
        for tok in tokens:
            for s in _SUFFIXES:
                m = s.pattern.fullmatch(tok)
                if m:
                    matched.append((s, m))
                    break
            else:
                matched = None
                break
        if matched:
            kinds = [s.name for s, _ in matched]
            if len(set(kinds)) != len(kinds):
                return None  # e.g. _5epochs_10epochs: ambiguous, not a name we build
            return (bases[base_name] if base_name in bases else _trainer(base_name)), matched
    return None


def derive(name: str, base: type, matched: Iterable[Tuple[Suffix, "re.Match[str]"]], module: str) -> type:
    hparams: dict = {}
    attrs: dict = {}
    mixins: tuple = ()
    for s, m in matched:
        if s.applies_to is not None and not s.applies_to(base):
            raise ValueError(f"suffix {m.group(0)!r} does not apply to {base.__name__}")
        h, a, mix = s.build(m)
        hparams.update(h)
        attrs.update(a)
        mixins += tuple(mix)
    from .base import HParamsMixin

    if not issubclass(base, HParamsMixin):  # stock nnUNetTrainer: the mixin applies the hparams
        mixins += (HParamsMixin,)
    if "arch_kwargs" in attrs:  # a suffix adds constructor kwargs to the base's (e.g. a paper trainer's batch_norm)
        attrs["arch_kwargs"] = {**getattr(base, "arch_kwargs", {}), **attrs["arch_kwargs"]}
    doc = (f"{base.__name__} with " + ", ".join(m.group(0) for _, m in matched) + " (built by name)." if matched
           else f"{base.__name__} under its former name {name} (its model folders and checkpoints keep loading).")
    ns = {"__module__": module, "__qualname__": name, "hparams": hparams, "__doc__": doc}
    ns.update(attrs)
    return type(name, mixins + (base,), ns)

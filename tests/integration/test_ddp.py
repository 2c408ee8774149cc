"""DDP-safe networks. nnU-Net's multi-GPU path (``nnUNetv2_train ... -num_gpus N``) needs NCCL; the part that is ours
is the network and the trainer's loss inside ``DistributedDataParallel``. Here: 2 CPU processes with the gloo backend;
each trainer is constructed as nnU-Net does under DDP (``is_ddp`` true, so ``_build_loss`` takes its DDP branch:
batch Dice gathered across ranks, the lowest deep-supervision weight 1e-6 instead of 0), builds its network from
small plans by its own ``build_network_architecture``, wraps it in ``DistributedDataParallel`` with
``find_unused_parameters=False`` (nnU-Net's setting) and runs two training steps with its own loss (deep supervision
on) and optimizer. An unused parameter makes the second step raise; the averaged gradients must be identical on both
ranks (each rank sees different data) and the updated weights too.

Not reproduced: nnU-Net converts BatchNorm to SyncBatchNorm under DDP, which runs only on GPUs; the one trainer with
BatchNorm (``nnUNetTrainerDMCNetPaper``) runs with DDP's buffer broadcast instead.

Default run: one trainer per network family (``FAMILY_SUBSET``), 2D and 3D. ``-m slow``: every registered
architecture (through its trainer, or the generic ``nnUNetTrainerExt`` path for variants without one) and every
exported trainer."""
from __future__ import annotations

import copy
import os
import socket
import traceback

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2
NUM_CLASSES = 3  # background, pancreas, tumour
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1, "tumour": 2},
                "numTraining": 6, "file_ending": ".nii.gz"}
#: one trainer per network family (module of nnunet_ext.architectures), for the default run
FAMILY_SUBSET = ["nnUNetTrainerPlainUNet", "nnUNetTrainerDLKUNetS", "nnUNetTrainerDMCNet", "nnUNetTrainerMoNet",
                 "nnUNetTrainerResDSN", "nnUNetTrainerTwoStageUNet"]
# (configuration, patch, strides, features): small nnU-Net-like plans (anisotropic 3D strides)
GEOMETRIES = {
    "2d": ((32, 32), [[1, 1], [2, 2], [2, 2], [2, 2]], [8, 16, 32, 32]),
    "3d_fullres": ((8, 32, 24), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [8, 16, 32, 32]),
}


def _plans() -> dict:
    """A plans dict as nnU-Net's planner writes it, with small 2d and 3d_fullres configurations."""
    from nnunet_ext.plans.synth import configuration_entry, plans_dict

    confs = {name: configuration_entry(patch, strides, [[3] * len(patch)] * len(strides), features, batch_size=2,
                                       data_identifier=f"nnUNetPlans_{name}", median_image_size=patch, batch_dice=True)
             for name, (patch, strides, features) in GEOMETRIES.items()}
    return plans_dict(confs, dataset_name="Dataset991_SyntheticPancreas", median_shape=[8, 32, 24],
                      intensity={"max": 200.0, "mean": 100.0, "median": 100.0, "min": 0.0, "percentile_00_5": 10.0,
                                 "percentile_99_5": 190.0, "std": 20.0})


def _trainer_class(name: str) -> type:
    """An exported trainer by name, or ``arch:<variant>``: the generic trainer path for a registered variant without
    a trainer of its own. Small test widths of the registry (``test_kwargs``) are added to the trainer's kwargs."""
    from nnunet_ext import architectures as A
    from nnunet_ext import trainers as T

    if name.startswith("arch:"):
        arch = name[5:]
        base, extra = T.nnUNetTrainerExt, {"arch": arch}
    else:
        base, extra = T.get_trainer(name), {}
    small = A.get_spec(extra.get("arch", getattr(base, "arch", None))).test_kwargs
    if not small and not extra:
        return base
    return type(f"{base.__name__}_ddptest", (base,), {**extra, "arch_kwargs": {**base.arch_kwargs, **small}})


def _one_step_each(trainer_names, configuration, rank, out_dir):
    """For each trainer: two DDP training steps; returns {name: error or None} (raises on a gradient mismatch)."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    results = {}
    for name in trainer_names:
        try:
            cls = _trainer_class(name)
            plans = copy.deepcopy(_plans())
            plans["continue_training"] = False  # nnU-Net's get_trainer_from_args adds it
            trainer = cls(plans, configuration, 0, DATASET_JSON, torch.device("cpu"))
            assert trainer.is_ddp, "trainer does not see the process group"
            torch.manual_seed(0)
            net = cls.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1,
                                                 trainer.label_manager.num_segmentation_heads, True)
            trainer.enable_deep_supervision = True
            ddp = DDP(net, find_unused_parameters=False)
            trainer.network = ddp
            loss_fn = trainer._build_loss()
            optimizer, _ = trainer.configure_optimizers()
            patch = trainer.configuration_manager.patch_size
            g = torch.Generator().manual_seed(1000 + rank)  # different data on each rank
            for _step in range(2):
                x = torch.randn(1, 1, *patch, generator=g)
                seg = torch.randint(0, NUM_CLASSES, (1, 1, *patch), generator=g).float()
                optimizer.zero_grad(set_to_none=True)
                out = ddp(x)
                assert isinstance(out, (list, tuple)) and len(out) > 1, "deep supervision is off"
                # nnU-Net's targets: the segmentation downsampled (nearest) to every output's size
                target = [F.interpolate(seg, size=o.shape[2:], mode="nearest") for o in out]
                loss = loss_fn(out, target)
                assert torch.isfinite(loss), f"loss {loss}"
                loss.backward()
                missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
                assert not missing, f"parameters without gradient: {missing[:4]}"
                grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.requires_grad])
                assert torch.isfinite(grads).all()
                gathered = [torch.empty_like(grads) for _ in range(WORLD)]
                dist.all_gather(gathered, grads)
                assert torch.equal(gathered[0], gathered[1]), \
                    f"gradients differ across ranks (max |diff| {(gathered[0] - gathered[1]).abs().max():.3g})"
                optimizer.step()
            weights = torch.cat([p.detach().flatten() for p in net.parameters()])
            gathered = [torch.empty_like(weights) for _ in range(WORLD)]
            dist.all_gather(gathered, weights)
            assert torch.equal(gathered[0], gathered[1]), "weights differ across ranks after the update"
            results[name] = None
        except Exception:  # noqa: BLE001 - reported per trainer by the parent
            results[name] = traceback.format_exc(limit=6)
            # a failed collective leaves the group unusable: stop here, the parent reports the rest as not run
            break
        finally:
            dist.barrier()
    return results


def _worker(rank, port, trainer_names, configurations, out_dir):
    import json
    from datetime import timedelta

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), nnUNet_compile="f",
                      nnUNet_results=str(out_dir / "results"), nnUNet_n_proc_DA="0")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=300))
    try:
        res = {c: _one_step_each(trainer_names, c, rank, out_dir) for c in configurations}
        (out_dir / f"rank{rank}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ddp(trainer_names, tmp_path, configurations=("2d", "3d_fullres")):
    import json

    mp.spawn(_worker, args=(_free_port(), list(trainer_names), list(configurations), tmp_path), nprocs=WORLD,
             join=True)
    failures = []
    for rank in range(WORLD):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for conf in configurations:
            for name in trainer_names:
                if name not in res[conf]:
                    failures.append(f"{conf} {name}: not run (an earlier trainer failed)")
                elif res[conf][name] is not None:
                    failures.append(f"rank {rank} {conf} {name}:\n{res[conf][name]}")
    assert not failures, "\n".join(failures)


def all_trainer_names():
    """Every exported trainer, plus the generic path for registered variants that no trainer uses."""
    from nnunet_ext import architectures as A
    from nnunet_ext import trainers as T

    exported = T.exported_trainers()
    with_trainer = {getattr(c, "arch", None) for c in exported.values()}
    return list(exported) + [f"arch:{a}" for a in A.list_architectures() if a not in with_trainer]


def test_family_subset_is_one_per_family():
    from nnunet_ext import architectures as A
    from nnunet_ext import trainers as T

    families = {A.get_spec(a).cls.__module__ for a in A.list_architectures()}
    covered = {A.get_spec(T.get_trainer(n).arch).cls.__module__ for n in FAMILY_SUBSET}
    assert covered == families


def test_ddp_one_trainer_per_family(tmp_path):
    _run_ddp(FAMILY_SUBSET, tmp_path)


@pytest.mark.slow
def test_ddp_every_architecture_and_trainer(tmp_path):
    _run_ddp(all_trainer_names(), tmp_path)

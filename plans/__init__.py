"""Planning for nnunet-ext architectures: :class:`~nnunet_ext.plans.planner.ArchitecturePlanner`, nnU-Net's
experiment planner sized to a GPU-memory target for any registered architecture (``nnunet-ext plan``)."""
from .planner import ArchitecturePlanner, PlanningError, plans_name_for

__all__ = ["ArchitecturePlanner", "PlanningError", "plans_name_for"]

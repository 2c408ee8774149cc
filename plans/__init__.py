"""Planning for nnunet-ext architectures (GPU-memory-aware experiment planners come with their issue)."""

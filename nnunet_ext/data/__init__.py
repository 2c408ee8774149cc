"""Data for trying nnunet-ext without a CT archive: the synthetic pancreas-CT dataset and the ``demo``."""

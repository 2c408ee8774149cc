"""Input checks run before any work: file integrity (truncated, non-finite), geometry and channels, and nnU-Net's
own arguments (``check-inputs`` and the train/predict pass-throughs)."""

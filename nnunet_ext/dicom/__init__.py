"""Clinical inputs and outputs of ``predict`` / ``predict-c2f`` (docs/dicom.md): DICOM series in (one CT series =
one case, read with SimpleITK/GDCM: :mod:`.series`), any ``-i`` layout made into nnU-Net's (:mod:`.inputs`), DICOM SEG
out (highdicom: :mod:`.seg`), per-structure statistics (:mod:`.statistics`), previews (:mod:`.preview`), progress
over the cases (:mod:`.progress`) and the flags that ask for them (:mod:`.outputs`); :mod:`.synthetic` writes test
series. They live in this layer (6) rather than in ``inference`` (7) because both ``inference`` and ``c2f`` (7,
siblings that may not import each other) use them."""

"""DICOM series in (one CT series = one case, read with SimpleITK/GDCM) and DICOM SEG out (highdicom)."""

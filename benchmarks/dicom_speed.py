"""The two performance figures of docs/dicom.md (issue 24):

1. reading a 512x512xN CT series (default N = 300, one file per slice, unsigned 16-bit, intercept -1024, files
   shuffled) as ``predict`` does (:func:`nnunet_ext.dicom.series.scan_folder`: every header read and checked,
   slices sorted along the normal, compressed syntaxes probed; then :func:`read_series`: SimpleITK's GDCM reader
   over the sorted files, HU; int16 where the headers' range fits: the 12-bit series) against a plain SimpleITK
   series read of the same files
   (``GetGDCMSeriesFileNames`` + ``ImageSeriesReader``), for a 16-bit and a 12-bit stored series; the staging
   write (uncompressed NIfTI) is timed apart;
2. statistics plus preview of one 512x512x200 case with a pancreas- and a tumour-like structure
   (:func:`structure_statistics` + :func:`write_case_preview`), arrays in memory.

Each timing is the median of ``--repeats`` runs, the two reads alternated (page cache warm for both). Example::

    OMP_NUM_THREADS=1 python benchmarks/dicom_speed.py --workdir /tmp/dicom_speed
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np


CPU = {}  # label -> median CPU seconds of this process (all threads), beside the wall times


def _median_time(fn, repeats: int, label: str = ""):
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU[label] = statistics.median(cpu)
    return statistics.median(times), out


def read_figures(workdir: Path, slices: int, repeats: int, bits_stored: int = 16) -> dict:
    import SimpleITK as sitk

    from nnunet_ext.dicom.series import read_series, scan_folder
    from nnunet_ext.dicom.synthetic import write_ct_series

    folder = workdir / f"series_{slices}_{bits_stored}bit"
    if not folder.is_dir():
        rng = np.random.default_rng(0)
        zz, yy, xx = np.ogrid[:slices, :512, :512]
        vol = (((yy - 256) ** 2 + (xx - 256) ** 2) < 220 ** 2) * 1040 - 1000 + (zz % 7)
        vol = (vol + rng.integers(-20, 20, (1, 512, 512))).astype(np.int16)
        write_ct_series(vol, folder, (1.0, 0.75, 0.75), (-190.0, -190.0, -300.0), bits_stored=bits_stored)

    def plain():
        r = sitk.ImageSeriesReader()
        uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0]
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        return r.Execute()

    def ours():
        s = scan_folder(folder, log=lambda line: None)[0]
        return read_series(s)

    t_plain, t_ours, c_plain, c_ours = [], [], [], []
    for _ in range(repeats):  # alternated: both see the same page cache and load
        t_plain.append(_median_time(plain, 1, "plain")[0])
        c_plain.append(CPU["plain"])
        t_ours.append(_median_time(ours, 1, "ours")[0])
        c_ours.append(CPU["ours"])
    img = ours()
    # staging as predict writes it for SimpleITK readers: uncompressed (nnunet_ext.dicom.inputs.stage)
    t_write, _ = _median_time(lambda: sitk.WriteImage(img, str(workdir / "staged.nii"), False), repeats)
    med = statistics.median
    return {"slices": slices, "bits_stored": bits_stored, "plain_sitk_s": med(t_plain), "ours_s": med(t_ours),
            "ratio": med(t_ours) / med(t_plain), "cpu_ratio": med(c_ours) / med(c_plain),
            "plain_cpu_s": med(c_plain), "ours_cpu_s": med(c_ours), "staging_write_s": t_write,
            "pixel_type": img.GetPixelIDTypeAsString()}


def stats_preview_figures(workdir: Path, repeats: int) -> dict:
    from scipy import ndimage

    from nnunet_ext.dicom.preview import write_case_preview
    from nnunet_ext.dicom.statistics import structure_statistics

    shape = (200, 512, 512)
    rng = np.random.default_rng(1)
    image = rng.integers(-100, 200, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    labels[((z - 100) / 25) ** 2 + ((y - 280) / 30) ** 2 + ((x - 260) / 70) ** 2 < 1] = 1
    labels[((z - 100) / 8) ** 2 + ((y - 280) / 10) ** 2 + ((x - 230) / 10) ** 2 < 1] = 2
    names = {1: "pancreas", 2: "tumour"}
    spacing = (0.75, 0.75, 1.5)

    def stats():  # as predict --statistics --preview: the label boxes found once, for both
        boxes = ndimage.find_objects(labels, max_label=2)
        return boxes, structure_statistics(image, labels, spacing, (0, 0, 0), np.eye(3).ravel(), names, boxes)

    def preview():
        return write_case_preview(image, labels, spacing, names, workdir / "preview.png", title="bench", boxes=boxes)

    boxes = ndimage.find_objects(labels, max_label=2)
    preview()  # matplotlib's first figure (font cache) is not a per-case cost
    t_stats, _ = _median_time(stats, repeats, "stats")
    t_prev, _ = _median_time(preview, repeats, "preview")
    return {"shape": list(shape), "statistics_s": t_stats, "preview_s": t_prev, "total_s": t_stats + t_prev,
            "total_cpu_s": CPU["stats"] + CPU["preview"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/dicom_speed"))
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the series (default: removed at the end)")
    a = p.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    for bits in (16, 12):
        r = read_figures(a.workdir, a.slices, a.repeats, bits)
        print(f"read 512x512x{r['slices']} series ({bits}-bit stored): plain SimpleITK {r['plain_sitk_s']:.2f} s, "
              f"ours (scan + checks + read, {r['pixel_type']}) {r['ours_s']:.2f} s, ratio {r['ratio']:.2f} "
              f"(target <= 1.5; CPU {r['plain_cpu_s']:.2f} vs {r['ours_cpu_s']:.2f} s, ratio {r['cpu_ratio']:.2f}); "
              f"staging write (uncompressed): {r['staging_write_s']:.2f} s")
        if not a.keep:
            shutil.rmtree(a.workdir / f"series_{a.slices}_{bits}bit", ignore_errors=True)
    s = stats_preview_figures(a.workdir, a.repeats)
    print(f"statistics + preview at {'x'.join(map(str, s['shape'][::-1]))}: statistics {s['statistics_s']:.2f} s, "
          f"preview {s['preview_s']:.2f} s, total {s['total_s']:.2f} s (target <= 2 s; CPU {s['total_cpu_s']:.2f} s)")


if __name__ == "__main__":
    main()

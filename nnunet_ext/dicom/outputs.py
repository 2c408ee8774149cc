"""The extra outputs of ``predict`` / ``predict-c2f`` (``--dicom_seg``, ``--statistics``, ``--preview``,
``--quiet``): the flags, their checks before anything runs, and writing them after the predictions.

After the predictor has written ``<case><file_ending>`` for each case, :func:`write_extras` reads each prediction
with its image (channel 0 of the case: HU for CT) and writes ``<case>.seg.dcm`` (DICOM input only,
:mod:`.seg`), ``statistics.csv`` / ``statistics.json`` (:mod:`.statistics`) and ``preview/<case>.png`` plus
``preview/overview.png`` (:mod:`.preview`) into the output folder. A case without a prediction (e.g. another
``-part_id``'s) is left out, with one line.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from nnunet_ext.dicom.inputs import Inputs, image_cases
from nnunet_ext.errors import UserError

#: flag -> help; ours, stripped from the arguments before nnU-Net sees them
FLAGS = {
    "--dicom_seg": "also write <case>.seg.dcm, a DICOM SEG over each source series (DICOM input only)",
    "--statistics": "write statistics.csv and statistics.json: per case and structure voxels, ml, HU mean/std/"
                    "min/max, connected components, bounding box in mm",
    "--preview": "write preview/<case>.png (three planes through each structure, abdomen window) and "
                 "preview/overview.png",
    "--quiet": "no progress bar and no summary line",
}


@dataclass
class ExtraOutputs:
    dicom_seg: bool = False
    statistics: bool = False
    preview: bool = False
    quiet: bool = False

    @property
    def any(self) -> bool:
        return self.dicom_seg or self.statistics or self.preview


def add_extra_arguments(parser: argparse.ArgumentParser) -> None:
    """The four flags on an argparse parser (``predict-c2f``)."""
    for flag, help in FLAGS.items():
        parser.add_argument(flag, action="store_true", help=help)


def from_args(args) -> ExtraOutputs:
    return ExtraOutputs(*(bool(getattr(args, f.lstrip("-"), False)) for f in FLAGS))


def split_extra_flags(argv: Sequence[str]) -> Tuple[List[str], ExtraOutputs]:
    """``argv`` without our flags (for nnU-Net's own parser), and the flags."""
    rest = [a for a in argv if a not in FLAGS]
    return rest, ExtraOutputs(*(f in argv for f in FLAGS))


def check_extras(extras: ExtraOutputs, inputs: Inputs) -> None:
    if extras.dicom_seg and inputs.layout != "dicom":
        raise UserError(f"--dicom_seg needs DICOM input; -i {inputs.folder} holds {inputs.layout} images")


def write_extras(inputs: Inputs, output_folder, file_ending: str, dataset_json: dict, extras: ExtraOutputs,
                 log: Callable[[str], None] = print) -> List[Path]:
    """Write the requested extras for every case with a prediction; returns the files written."""
    import SimpleITK as sitk
    from scipy import ndimage

    from nnunet_ext.dicom.preview import write_case_preview, write_overview
    from nnunet_ext.dicom.seg import SEG_SUFFIX, label_names, write_seg
    from nnunet_ext.dicom.statistics import structure_statistics, write_statistics

    if not extras.any:
        return []
    out = Path(output_folder)
    names = label_names(dataset_json)
    written: List[Path] = []
    rows: Dict[str, list] = {}
    thumbs: Dict[str, tuple] = {}
    missing = []
    if extras.preview:
        (out / "preview").mkdir(parents=True, exist_ok=True)
    for case, image_file in image_cases(inputs, file_ending).items():
        pred = out / f"{case}{file_ending}"
        if not pred.is_file():
            missing.append(case)
            continue
        seg_img = sitk.ReadImage(str(pred))
        labels = sitk.GetArrayFromImage(seg_img)
        if extras.dicom_seg:
            written.append(write_seg(labels, inputs.series[case], dataset_json, out / f"{case}{SEG_SUFFIX}"))
        if extras.statistics or extras.preview:
            img = sitk.ReadImage(image_file)
            image = sitk.GetArrayViewFromImage(img)
            if image.shape != labels.shape:
                raise UserError(f"{pred}: shape {list(labels.shape)} differs from its image {image_file} "
                                f"{list(image.shape)}")
            boxes = ndimage.find_objects(labels, max_label=max(names, default=0))  # once for both
            if extras.statistics:
                rows[case] = structure_statistics(image, labels, img.GetSpacing(), img.GetOrigin(),
                                                  img.GetDirection(), names, boxes)
            if extras.preview:
                png = out / "preview" / f"{case}.png"
                thumbs[case] = tuple(np.array(a) for a in write_case_preview(image, labels, img.GetSpacing(), names,
                                                                             png, title=case, boxes=boxes))
                written.append(png)
    if missing:
        log(f"no prediction for {len(missing)} case(s) (e.g. {missing[0]}): no extras written for them")
    if extras.statistics:
        written += write_statistics(rows, out)
    if extras.preview and thumbs:
        written.append(write_overview(thumbs, out / "preview" / "overview.png", names))
    return written

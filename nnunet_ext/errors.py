"""Errors of nnunet-ext that the command line reports on one line (no traceback) with exit status 2."""
import os
from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input (a file, folder or value); the message names it, on one line."""


def dataset_name(dataset) -> str:
    """nnU-Net's ``DatasetXXX_Name`` for a name or id (``maybe_convert_to_dataset_name``); UserError if unknown."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError) as e:
        raise UserError(f"dataset {dataset!r} not found in nnUNet_raw/nnUNet_preprocessed/nnUNet_results "
                        f"({str(e).splitlines()[0][:120]})") from None


def preprocessed_file(dataset_folder_name: str, filename: str, what: str = "plans") -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name/filename``; UserError (one line) if the variable is unset or the file
    is missing (the one rule for files of a preprocessed dataset)."""
    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise UserError("nnUNet_preprocessed is not set")
    f = Path(pre) / dataset_folder_name / filename
    if not f.is_file():
        verb = "do" if what == "plans" else "does"
        raise UserError(f"{what} {f} {verb} not exist (plan and preprocess {dataset_folder_name} first, or check -p)")
    return f

"""Errors of nnunet-ext that the command line reports on one line (no traceback) with exit status 2."""


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

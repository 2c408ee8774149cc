"""Input checks run before any work, each a one-line :class:`~nnunet_ext.errors.UserError` naming the file or value:
one file read whole (:mod:`.files`), the files of a case and a prediction against its reference (:mod:`.geometry`),
nnU-Net's own arguments (:mod:`.nnunet_args`). ``nnunet-ext check-inputs`` is :mod:`.cli`. The public functions of
the first three are this package's API."""
from nnunet_ext.checks.files import (NATURAL_ENDINGS, FileInfo, check_checkpoint, check_finite, check_output_path,
                                     inspect_file)
from nnunet_ext.checks.geometry import (DIRECTION_ATOL, ORIGIN_ATOL_MM, SPACING_RTOL, check_case_files,
                                        check_evaluation_folders, check_evaluation_pairs, check_prediction_inputs,
                                        geometry_difference, list_case_files, model_ndim)
from nnunet_ext.checks.nnunet_args import (check_c2f_arguments, check_not_cascade, check_predict_args, check_train_args,
                                           parse_folds, previous_stage)

__all__ = ["NATURAL_ENDINGS", "FileInfo", "check_checkpoint", "check_finite", "check_output_path", "inspect_file", "DIRECTION_ATOL",
           "ORIGIN_ATOL_MM", "SPACING_RTOL", "check_case_files", "check_evaluation_folders", "check_evaluation_pairs",
           "check_prediction_inputs", "geometry_difference", "list_case_files", "model_ndim", "check_c2f_arguments",
           "check_predict_args", "check_train_args", "parse_folds", "check_not_cascade", "previous_stage"]

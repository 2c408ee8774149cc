"""Errors of nnunet-ext that the command line reports on one line (no traceback) with exit status 2."""


class UserError(Exception):
    """An error caused by the user's input (a file, folder or value); the message names it, on one line."""

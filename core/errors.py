"""Errors that carry a message meant for the user: which file, what is wrong with it."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a file, a folder, an option). The CLI prints it in one line and exits 2;
    the GUI shows it in a dialog. The message must name the file or option and the problem."""

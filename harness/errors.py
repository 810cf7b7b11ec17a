"""Errors the CLI turns into one clear line and a non-zero exit."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what and how to fix it."""

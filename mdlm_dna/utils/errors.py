"""Errors that are the user's to fix: the command lines print their message on one line, not a traceback.

Raise a :class:`UserError` (or one of its kinds) when the input is wrong, not the code: a bad file,
config value or checkpoint. The message names the file or key, says what is wrong and what to do.
Every entry point turns it into ``error: MESSAGE`` on stderr and exit status 2 (see
:mod:`mdlm_dna.cli.entry`); anything else is a bug and keeps its traceback. The kinds subclass
``ValueError`` too, so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Wrong input, not a bug: the message alone tells the user what to fix."""


class ConfigError(UserError, ValueError):
    """A config value (``key=value`` override) is out of range or of the wrong type; the message names the key."""


class DataError(UserError, ValueError):
    """A data file (FASTA, BED, table, text) cannot be used; the message names the file (and line or record)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run it is asked to continue."""


class RunDirError(UserError, RuntimeError):
    """The run folder cannot be used: another process holds it, it is read-only, or its disk is full."""

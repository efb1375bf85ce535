"""Errors raised by ml/; every one derives from :class:`MLError`."""

from learnstream.exceptions import LearnstreamError


class MLError(LearnstreamError):
    """Root of the errors ml/ raises on purpose."""


class DatasetFormatError(MLError):
    """A KT text file or lake table does not have the expected shape; says file and line."""


class UnknownNameError(MLError):
    """A model or dataset name is not registered; the message lists the known names."""


class CheckpointError(MLError):
    """A checkpoint is missing, unreadable or belongs to another configuration."""


class RegistryError(MLError):
    """The MLflow registry has no usable version for the request (e.g. nothing to roll back to)."""

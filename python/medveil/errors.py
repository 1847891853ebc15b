"""The exceptions medveil raises; each message names the file or input and the remedy."""

from __future__ import annotations


class MedveilError(Exception):
    """Base class of every error medveil raises on purpose."""


class PolicyError(MedveilError, ValueError):
    """A policy file or value is invalid; the message names the line and the problem."""


class DicomInputError(MedveilError):
    """An input file is not DICOM, is truncated, or cannot be de-identified for sure."""


class AuthenticationError(MedveilError):
    """A ciphertext, tag, header or key failed authentication; nothing was decrypted."""


class QuarantineError(MedveilError):
    """A file cannot be cleaned for sure; it must be quarantined, never released."""


class BudgetExceededError(MedveilError):
    """A differentially private query would spend more epsilon than the budget has left."""

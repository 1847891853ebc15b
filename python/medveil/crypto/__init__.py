"""Encryption: the ChaCha20-Poly1305 AEAD, age files, key files and the re-identification vault.

``medveil.crypto`` itself is the AEAD's public face (``crypto.seal``, ``crypto.open``); the
age format, key files and the vault are its submodules.
"""

from medveil.crypto.aead import *  # noqa: F403  (the AEAD's __all__ is this package's API)
from medveil.crypto.aead import __all__ as __all__

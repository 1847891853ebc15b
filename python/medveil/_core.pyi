"""Types of medveil's C++ core (the pybind11 module ``medveil._core``).

Generated with pybind11-stubgen, then folded into one file: each submodule of the extension
is written as a class of static methods so that one ``_core.pyi`` sits beside the binary
(a stub folder named ``_core`` would compete with it on import).
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

class dispatch:
    """Which SIMD backend the kernels use"""

    @staticmethod
    def active() -> str: ...
    @staticmethod
    def available() -> list[str]: ...
    @staticmethod
    def cpu() -> dict[str, bool]: ...
    @staticmethod
    def set_backend(name: str) -> None: ...

class mask:
    """In-place pixel masking kernels"""

    @staticmethod
    def fix_unused_bits(
        pixels: numpy.ndarray, bits_stored: typing.SupportsInt | typing.SupportsIndex, signed: bool
    ) -> None: ...
    @staticmethod
    def mask_regions(
        pixels: numpy.ndarray,
        regions: numpy.ndarray,
        value: typing.Any = 0,
        *,
        planar: bool = False,
    ) -> None: ...

class crypto:
    """ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD"""

    # Returns the result as bytes, or writes it into ``out`` and returns None.
    @typing.overload
    @staticmethod
    def aead_open(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        aad: typing.Any = b"",
        out: None = None,
    ) -> bytes: ...
    @typing.overload
    @staticmethod
    def aead_open(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        aad: typing.Any = b"",
        out: typing.Any,
    ) -> None: ...
    # Returns the result as bytes, or writes it into ``out`` and returns None.
    @typing.overload
    @staticmethod
    def aead_seal(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        aad: typing.Any = b"",
        out: None = None,
    ) -> bytes: ...
    @typing.overload
    @staticmethod
    def aead_seal(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        aad: typing.Any = b"",
        out: typing.Any,
    ) -> None: ...
    @staticmethod
    def age_open_chunks(
        key: typing.Any,
        first_index: typing.SupportsInt | typing.SupportsIndex,
        data: typing.Any,
        out: typing.Any,
        *,
        final: bool,
        threads: typing.SupportsInt | typing.SupportsIndex = 0,
    ) -> int: ...
    @staticmethod
    def age_seal_chunks(
        key: typing.Any,
        first_index: typing.SupportsInt | typing.SupportsIndex,
        data: typing.Any,
        out: typing.Any,
        *,
        final: bool,
        threads: typing.SupportsInt | typing.SupportsIndex = 0,
    ) -> int: ...
    @staticmethod
    def age_sealed_size(length: typing.SupportsInt | typing.SupportsIndex, final: bool) -> int: ...
    @staticmethod
    def chacha20_block(key: typing.Any, counter: int, nonce: typing.Any) -> bytes: ...
    @staticmethod
    def chacha20_keystream(
        key: typing.Any,
        nonce: typing.Any,
        length: typing.SupportsInt | typing.SupportsIndex,
        *,
        counter: int = 0,
    ) -> bytes: ...
    # Returns the result as bytes, or writes it into ``out`` and returns None.
    @typing.overload
    @staticmethod
    def chacha20_xor(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        counter: int = 0,
        out: None = None,
    ) -> bytes: ...
    @typing.overload
    @staticmethod
    def chacha20_xor(
        key: typing.Any,
        nonce: typing.Any,
        data: typing.Any,
        *,
        counter: int = 0,
        out: typing.Any,
    ) -> None: ...
    @staticmethod
    def poly1305(key: typing.Any, data: typing.Any) -> bytes: ...
    AGE_CHUNK: int
    AGE_SEALED_CHUNK: int
    KEY_BYTES: int
    NONCE_BYTES: int
    TAG_BYTES: int

class noise:
    """ChaCha20 CSPRNG and exact Laplace samplers"""

    class Rng:
        """
        ChaCha20 fast-key-erasure generator seeded from the operating system.
        """
        @staticmethod
        def insecure_from_seed(seed: typing.Any) -> noise.Rng: ...
        def __init__(self) -> None: ...
        def bytes(self, n: typing.SupportsInt | typing.SupportsIndex) -> bytes: ...
        @property
        def bytes_used(self) -> int: ...
        @property
        def deterministic(self) -> bool: ...

    @staticmethod
    def bernoulli_exp(
        rng: noise.Rng,
        num: typing.SupportsInt | typing.SupportsIndex,
        den: typing.SupportsInt | typing.SupportsIndex,
        size: typing.SupportsInt | typing.SupportsIndex,
    ) -> typing.Any: ...
    @staticmethod
    def discrete_laplace(
        rng: noise.Rng,
        num: typing.SupportsInt | typing.SupportsIndex,
        den: typing.SupportsInt | typing.SupportsIndex,
        size: typing.SupportsInt | typing.SupportsIndex = 0,
        *,
        out: typing.Any = None,
    ) -> numpy.typing.NDArray[numpy.int64]: ...
    @staticmethod
    def discrete_laplace_cks(
        rng: noise.Rng,
        num: typing.SupportsInt | typing.SupportsIndex,
        den: typing.SupportsInt | typing.SupportsIndex,
        size: typing.SupportsInt | typing.SupportsIndex = 0,
        *,
        out: typing.Any = None,
    ) -> numpy.typing.NDArray[numpy.int64]: ...
    @staticmethod
    def grid_exponent(scale: typing.SupportsFloat | typing.SupportsIndex) -> int: ...
    @staticmethod
    def keystream(
        key: typing.Any,
        nonce: typing.Any,
        counter: typing.SupportsInt | typing.SupportsIndex,
        n: typing.SupportsInt | typing.SupportsIndex,
    ) -> bytes: ...
    @staticmethod
    def laplace_on_grid(
        rng: noise.Rng,
        values: typing.Any,
        scale: typing.SupportsFloat | typing.SupportsIndex,
        k: typing.SupportsInt | typing.SupportsIndex,
        size: typing.SupportsInt | typing.SupportsIndex = 0,
        *,
        out: typing.Any = None,
    ) -> numpy.typing.NDArray[numpy.float64]: ...
    @staticmethod
    def rational_scale(scale: typing.SupportsFloat | typing.SupportsIndex) -> tuple[int, int]: ...
    @staticmethod
    def uniform_below(
        rng: noise.Rng,
        n: int,
        size: typing.SupportsInt | typing.SupportsIndex = 0,
        *,
        out: typing.Any = None,
    ) -> numpy.typing.NDArray[numpy.uint64]: ...

class textscreen:
    """Burned-in text screen over 8-bit frames"""

    @staticmethod
    def check_lines(
        image: numpy.ndarray,
        lines: numpy.ndarray,
        thresholds: numpy.ndarray,
        *,
        check_glyphs: typing.SupportsInt | typing.SupportsIndex,
        min_glyphs_in_noise: typing.SupportsInt | typing.SupportsIndex,
        narrow: typing.SupportsFloat | typing.SupportsIndex,
        sparse_ink: typing.SupportsFloat | typing.SupportsIndex,
        blob_stroke: typing.SupportsFloat | typing.SupportsIndex,
        noise_factor: typing.SupportsFloat | typing.SupportsIndex,
        strong_factor: typing.SupportsFloat | typing.SupportsIndex,
        extend_lines: typing.SupportsInt | typing.SupportsIndex,
        gap_lines: typing.SupportsInt | typing.SupportsIndex,
        extend_max: typing.SupportsInt | typing.SupportsIndex,
    ) -> numpy.typing.NDArray[numpy.int64]: ...
    @staticmethod
    def find_text_boxes(
        image: numpy.ndarray,
        *,
        bright: bool = True,
        dark: bool = True,
        min_height: typing.SupportsInt | typing.SupportsIndex = 4,
        max_height: typing.SupportsInt | typing.SupportsIndex = 120,
        threshold: typing.SupportsInt | typing.SupportsIndex = 40,
        radius: typing.SupportsInt | typing.SupportsIndex = 7,
    ) -> tuple[numpy.typing.NDArray[numpy.int64], numpy.typing.NDArray[numpy.float64]]: ...
    @staticmethod
    def luma(rgb: numpy.ndarray) -> numpy.typing.NDArray[numpy.uint8]: ...
    @staticmethod
    def screen(
        image: numpy.ndarray,
        *,
        bright: bool = True,
        dark: bool = True,
        min_height: typing.SupportsInt | typing.SupportsIndex = 4,
        max_height: typing.SupportsInt | typing.SupportsIndex = 120,
        threshold: typing.SupportsInt | typing.SupportsIndex = 40,
        radius: typing.SupportsInt | typing.SupportsIndex = 7,
        thresholds: typing.Any = None,
        noise_factor: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        noise_step: typing.SupportsInt | typing.SupportsIndex = 4,
        noise_max: typing.SupportsInt | typing.SupportsIndex = 200,
        scores: bool = True,
    ) -> tuple[
        numpy.typing.NDArray[numpy.int64],
        numpy.typing.NDArray[numpy.float64],
        numpy.typing.NDArray[numpy.int32],
    ]: ...
    @staticmethod
    def window(
        image: numpy.ndarray,
        *,
        clip_lo: typing.SupportsInt | typing.SupportsIndex,
        clip_hi: typing.SupportsInt | typing.SupportsIndex,
        invert: bool = False,
    ) -> numpy.typing.NDArray[numpy.uint8]: ...

class fastpath:
    """The native per-file de-identification road"""

    class Table:
        """A compiled policy for the native road"""

        def __init__(
            self,
            secret: bytes,
            sq_tags: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32],
            well_known: list[str],
            term_tags: list[int],
            catalog_tags: list[int],
            charsets: list[bytes],
            syntaxes: list[tuple[str, int]],
            private_report: int,
        ) -> None: ...
        def add_tag(
            self,
            tag: int,
            plain_vr: str,
            dict_vr: str,
            code_meaning: bool,
            vrs: list[
                tuple[
                    str,
                    bool,
                    tuple[int, int, list[int], bytes, str],
                    tuple[int, int, list[int], bytes, str],
                ]
            ],
        ) -> list[int]: ...
        def cache_put(
            self,
            entry: int,
            empty: bool,
            fingerprint: bytes,
            value: bytes,
            kind: int,
            report: int,
            notes: list[int],
            out: bytes,
        ) -> None: ...
        def add_meta(
            self, key: bytes, pre: bytes, post: bytes, taken: list[tuple[int, int]]
        ) -> None: ...
        def add_marks(self, marks: list[tuple[int, bytes]]) -> int: ...
        def cache_size(self) -> int: ...
        def meta_key(self, data: typing.Any, rows: numpy.typing.NDArray[numpy.int64]) -> bytes: ...

    @staticmethod
    def run(
        table: fastpath.Table,
        inputs: list[typing.Any],
        marks: list[int] | None = None,
        pixels: list[typing.Any] | None = None,
        threads: int = 1,
        build: bool = True,
        hash: bool = True,
    ) -> list[tuple[typing.Any, ...]]: ...

def scan_elements(
    data: typing.Any,
    pos: typing.SupportsInt | typing.SupportsIndex,
    end: typing.SupportsInt | typing.SupportsIndex,
    implicit: bool,
    sq_tags: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32],
) -> tuple[numpy.typing.NDArray[numpy.int64], int, typing.Any]: ...

__version__: str

def sha256(data: typing.Any) -> bytes:
    """SHA-256 (OpenSSL) of a bytes-like object or of a list/tuple of them, in order."""

def hmac_sha256(key: typing.Any, data: typing.Any) -> bytes:
    """HMAC-SHA256 (RFC 2104, OpenSSL) of data under key, both bytes-like."""

def gather(parts: typing.Sequence[typing.Any], hash: bool = True) -> tuple[bytes, str | None]:
    """The parts joined into one new bytes object, and its SHA-256 hex made in the same pass."""

class termsearch:
    """Aho-Corasick search of learned terms"""

    class Automaton:
        def __init__(self, patterns: typing.Sequence[typing.Any], mode: str = "word") -> None: ...
        def find(self, haystack: typing.Any) -> list[tuple[int, int, int]]: ...
        def any(self, haystack: typing.Any) -> bool: ...
        @property
        def states(self) -> int: ...
        def __len__(self) -> int: ...

    @staticmethod
    def plan_values(
        rows: numpy.typing.NDArray[numpy.int64],
        codes: numpy.typing.NDArray[numpy.int64],
        data: typing.Any,
        preamble: bool,
        number: numpy.ndarray,
        binary: numpy.ndarray,
        substring: numpy.ndarray,
        sq: int,
        un: int,
        leaves: numpy.typing.NDArray[numpy.int64],
    ) -> tuple[
        numpy.typing.NDArray[numpy.int64],
        numpy.typing.NDArray[numpy.int64],
        numpy.typing.NDArray[numpy.int64],
        bytes,
        list[tuple[int, int, int]],
        numpy.typing.NDArray[numpy.int64],
        numpy.typing.NDArray[numpy.int64],
    ]: ...
    @staticmethod
    def row_values(
        data: typing.Any,
        rows: numpy.typing.NDArray[numpy.int64],
        index: numpy.typing.ArrayLike,
    ) -> bytes: ...
    @staticmethod
    def is_word_char(code_point: int) -> bool: ...

class strict:
    """The strict structural check's row rules (cpp/include/medveil/strictrows.hpp)."""

    @staticmethod
    def check_rows(
        data: typing.Any,
        rows: numpy.typing.NDArray[numpy.int64],
        implicit: bool,
        text: numpy.ndarray | None = None,
        bad_undefined: numpy.ndarray | None = None,
    ) -> tuple[str, int] | None: ...
    @staticmethod
    def meta_extent(data: typing.Any) -> tuple[int, int, bytes | None, str | None, int]: ...

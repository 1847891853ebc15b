"""Differential privacy: exact Laplace noise, a persisted privacy budget, noisy statistics.

Noise comes from the C++ core (``medveil._core.noise``): a ChaCha20 generator seeded by the
operating system and samplers that compare random bits with rationals in integer
arithmetic, so the distributions are exact (Canonne, Kamath, Steinke 2020) instead of
floating-point approximations, which leak the true value through their low bits
(Mironov 2012).

Two kinds of noise:

- :func:`discrete_laplace`: integers ``z`` with probability proportional to
  ``exp(-|z| / scale)``; used for counts, which are integers already.
- :func:`laplace` / :func:`add_laplace`: the float-safe Laplace mechanism. Values are rounded
  to a grid ``g = 2^k`` (the smallest power of two >= ``(sensitivity / epsilon) / 2^40``, as
  in Google's differential-privacy library) and integer noise of scale ``scale / g`` is added
  on that grid, so every output is an exact multiple of ``g``. Rounding moves each value by
  at most ``g / 2``, so two neighbouring inputs may differ by ``sensitivity + g`` after
  rounding; the scale is therefore calibrated to ``(sensitivity + g) / epsilon``
  (:func:`calibrated_scale`), which keeps the release ``epsilon``-DP; for a vector of which
  one individual may change ``c`` coordinates it is ``(sensitivity + c g) / epsilon``.
  ``g`` is about ``2^-40`` of the noise scale, so the extra noise is negligible.
- Sums (:func:`noisy_sum`, :func:`noisy_mean`, :func:`noisy_exact_sums`) are computed
  exactly (fractions) and rounded once to the grid: a float running sum's rounding error
  could otherwise exceed the sensitivity the noise was calibrated for.

The privacy unit is the patient: callers reduce data to one contribution per patient (or a
stated cap per patient, which multiplies the sensitivity) before noise is added;
:mod:`medveil.privacy.stats` does so for ``medveil stats``. Every release is validated
first (NaN, bounds, scales and values beyond what the core or a double holds raise
``ValueError``), then charged to a :class:`PrivacyBudget`, then released: a query that
fails costs nothing, and one that is charged cannot fail afterwards. Charges are exact
(integer units of 1e-12, rounded up, so no positive epsilon is free); a float epsilon
counts as the decimal it prints as, and noise is calibrated to no more than that. The
budget of a cohort lives in its catalog (SQLite), so separate runs and processes together
cannot spend more than its total.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import operator
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medveil import _core
from medveil.errors import BudgetExceededError, MedveilError

__all__ = [
    "GRANULARITY_PARAM",
    "LedgerEntry",
    "PrivacyBudget",
    "add_laplace",
    "calibrated_scale",
    "default_rng",
    "discrete_laplace",
    "discrete_laplace_interval",
    "granularity",
    "insecure_rng",
    "keyed_rng",
    "laplace",
    "laplace_interval",
    "noisy_count",
    "noisy_exact_sums",
    "noisy_mean",
    "noisy_sum",
    "noisy_value",
]

#: The grid is the smallest power of two >= scale / GRANULARITY_PARAM.
GRANULARITY_PARAM = 2.0**40

if TYPE_CHECKING:
    Rng = Any  # the compiled core ships no type stubs
else:
    Rng = _core.noise.Rng

_rng_lock = threading.Lock()
_rng: Rng | None = None


def default_rng() -> Rng:
    """Return the process-wide generator, seeded from the operating system on first use."""
    global _rng
    with _rng_lock:
        if _rng is None:
            _rng = Rng()
        return _rng


def insecure_rng(seed: int | bytes) -> Rng:
    """Return a reproducible generator: NOT PRIVATE, for tests and benchmarks only."""
    if isinstance(seed, int):
        if seed < 0 or seed >= 2**256:
            raise ValueError("an integer seed must be in [0, 2^256)")
        seed = seed.to_bytes(32, "little")
    return Rng.insecure_from_seed(bytes(seed))


def _check_positive(name: str, x: float) -> float:
    x = float(x)
    if not (x > 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return x


#: An epsilon: a float (read as the decimal it prints as) or an exact Fraction.
Epsilon = float | Fraction


def _decimal(eps: Epsilon, name: str = "epsilon") -> Fraction:
    """The exact value an epsilon stands for: a Fraction as it is, a float as the shortest
    decimal that prints as it (0.1 is 1/10, what was typed), so ten charges of 0.1 are 1."""
    if isinstance(eps, Fraction):
        if not eps > 0:
            raise ValueError(f"{name} must be positive, got {eps}")
        return eps
    return Fraction(repr(_check_positive(name, eps)))


def _noise_epsilon(eps: Epsilon) -> Fraction:
    """The epsilon noise is calibrated to: the smaller of the float and its decimal, so a
    release never loses more privacy than the budget charges for it (see _units_up)."""
    if isinstance(eps, Fraction):
        return _decimal(eps)
    x = _check_positive("epsilon", eps)
    return min(Fraction(x), Fraction(repr(x)))


def _check_count(count: Any) -> int:
    """An exact integer count; NaN, infinities and fractions fail here, before any charge."""
    try:
        return operator.index(count)
    except TypeError:
        pass
    x = float(count)
    if not (math.isfinite(x) and x.is_integer()):
        raise ValueError(f"a count must be a finite integer, got {x!r}")
    return int(x)


def _rational(scale: float | Fraction) -> tuple[int, int]:
    if isinstance(scale, Fraction):
        if scale <= 0:
            raise ValueError("scale must be positive")
        if scale.numerator > 2**62 or scale.denominator > 2**62:
            raise ValueError("a Fraction scale needs numerator and denominator <= 2^62")
        return scale.numerator, scale.denominator
    num, den = _core.noise.rational_scale(_check_positive("scale", scale))
    return int(num), int(den)


def _ceil_double(x: Fraction) -> float:
    """The smallest double >= x: a scale a hair below the exact one would be less private
    (float sums and quotients round to nearest, e.g. 1 + 2^-53 == 1.0)."""
    if x > _MAX_DOUBLE:
        raise ValueError("the noise scale is above the largest double; use a larger epsilon")
    d = float(x)
    d = d if Fraction(d) >= x else math.nextafter(d, math.inf)
    if not math.isfinite(d):
        raise ValueError("the noise scale is above the largest double; use a larger epsilon")
    return d


_MAX_DOUBLE = Fraction(sys.float_info.max)


def granularity(scale: float) -> float:
    """The grid g = 2^k the float-safe Laplace uses for this scale (about scale / 2^40)."""
    return math.ldexp(1.0, _core.noise.grid_exponent(_check_positive("scale", scale)))


def calibrated_scale(
    sensitivity: float, epsilon: Epsilon, *, coordinates: int = 1
) -> tuple[float, float]:
    """Return (scale, g): the Laplace scale (sensitivity + coordinates * g) / epsilon and
    its grid g, for values of which one individual changes at most `coordinates`."""
    sensitivity = _check_positive("sensitivity", sensitivity)
    eps = _noise_epsilon(epsilon)
    if int(coordinates) < 1:
        raise ValueError("coordinates must be >= 1")
    # The grid is a power of two near 2^-40 of the scale; any such choice is private.
    fe = float(epsilon)
    ratio = sensitivity / fe if fe > 0.0 else math.inf
    if not math.isfinite(ratio):
        raise ValueError("sensitivity / epsilon is above the largest double")
    k = _core.noise.grid_exponent(ratio)
    g = math.ldexp(1.0, k)
    # Each rounded coordinate may move by up to g more than the value itself.
    extra = Fraction(g) * int(coordinates)
    scale = _ceil_double((Fraction(sensitivity) + extra) / eps)
    # The grid stays the one chosen for sensitivity / epsilon (the extra is ~2^-40 of it).
    return scale, g


def discrete_laplace(
    scale: float | Fraction, size: int | None = None, *, rng: Rng | None = None
) -> Any:
    """Exact discrete Laplace noise: integers z with P(z) proportional to exp(-|z|/scale)."""
    num, den = _rational(scale)
    n = 1 if size is None else int(size)
    out = _core.noise.discrete_laplace(rng or default_rng(), num, den, n)
    return int(out[0]) if size is None else out


def laplace(scale: float, size: int | None = None, *, rng: Rng | None = None) -> Any:
    """Float-safe Laplace noise of the given scale: exact multiples of granularity(scale)."""
    scale = _check_positive("scale", scale)
    k = _core.noise.grid_exponent(scale)
    n = 1 if size is None else int(size)
    out = _core.noise.laplace_on_grid(rng or default_rng(), None, scale, k, n)
    return float(out[0]) if size is None else out


def add_laplace(
    values: Any,
    sensitivity: float,
    epsilon: float,
    *,
    budget: PrivacyBudget | None = None,
    label: str = "add_laplace",
    rng: Rng | None = None,
) -> np.ndarray:
    """Release values + float-safe Laplace noise: epsilon-DP for the L1 sensitivity given.

    Every value is rounded to the grid, so the scale covers one grid step per value
    (``coordinates = values.size``). Values that are float sums carry their own summation
    error, which this does not cover: release sums with :func:`noisy_sum`, which sums exactly.
    """
    x = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    scale, g = calibrated_scale(sensitivity, epsilon, coordinates=max(1, x.size))
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or inf; clean or clamp them before adding noise")
    k = math.frexp(g)[1] - 1  # g is exactly 2^k
    # The core clamps values to 2^1000 grid steps: a larger one would come back wrong.
    limit = math.ldexp(1.0, min(1023, _GRID_CLAMP_STEPS_LOG2 + k))
    if x.size and float(np.max(np.abs(x))) > limit:
        raise ValueError(
            f"a value is above {limit:g}, the largest the noise grid of this scale holds; "
            "clamp or rescale the values"
        )
    if budget is not None:
        budget.charge(epsilon, label)
    out: np.ndarray = _core.noise.laplace_on_grid(rng or default_rng(), x, scale, k)
    shape: tuple[int, ...] = np.shape(values)
    return out.reshape(shape)


#: laplace_on_grid clamps rounded values to +-2^1000 grid steps (cpp/src/noise).
_GRID_CLAMP_STEPS_LOG2 = 1000


def laplace_interval(scale: float, confidence: float = 0.95) -> float:
    """Half-width w with P(|Laplace(scale)| <= w) = confidence."""
    return -_check_positive("scale", scale) * math.log(1.0 - confidence)


def discrete_laplace_interval(scale: float, confidence: float = 0.95) -> int:
    """Smallest integer w with P(|discrete Laplace(scale)| <= w) >= confidence."""
    scale = _check_positive("scale", scale)
    q = math.exp(-1.0 / scale)
    # P(|Z| > w) = 2 q^(w+1) / (1 + q); solve for the first w where it is <= 1 - confidence.
    tail = 1.0 - confidence
    w = max(0, math.ceil(math.log(tail * (1.0 + q) / 2.0) / math.log(q) - 1.0)) if q > 0 else 0
    while w > 0 and 2.0 * q**w / (1.0 + q) <= tail:
        w -= 1
    while 2.0 * q ** (w + 1) / (1.0 + q) > tail:
        w += 1
    return int(w)


def count_scale(sensitivity: int, epsilon: Epsilon) -> float:
    """The discrete Laplace scale of a count: the smallest double >= sensitivity / epsilon,
    checked against the core's limits (a ValueError here, before any charge)."""
    sens = _check_count(sensitivity)
    if sens < 1:
        raise ValueError("sensitivity of a count is a positive integer")
    # Rounded up to a double: a hair more noise, never less.
    scale = _ceil_double(Fraction(sens) / _noise_epsilon(epsilon))
    _rational(scale)  # an unusable scale must fail before the budget is charged
    return scale


def noisy_count(
    count: int,
    epsilon: Epsilon,
    *,
    sensitivity: int = 1,
    budget: PrivacyBudget | None = None,
    label: str = "count",
    rng: Rng | None = None,
) -> int:
    """Release an integer count (each patient changes it by <= sensitivity) with exact noise."""
    n = _check_count(count)
    scale = count_scale(sensitivity, epsilon)
    if budget is not None:
        budget.charge(epsilon, label)
    return n + int(discrete_laplace(scale, rng=rng))


@dataclass(frozen=True)
class PreparedSums:
    """Exact sums rounded to their noise grid and checked: releasing them cannot fail."""

    steps: list[int]
    grid: float
    step_scale: float


def prepare_exact_sums(
    sums: Sequence[Fraction | float | int],
    sensitivity: float,
    epsilon: Epsilon,
    *,
    coordinates: int = 1,
) -> PreparedSums:
    """Round exact sums to the grid and check every limit, so a release after the charge
    cannot fail: NaN, a scale or a sum beyond what a double or the core holds raise here."""
    scale, g = calibrated_scale(sensitivity, epsilon, coordinates=coordinates)
    gf = Fraction(g)
    steps = [round(Fraction(v) / gf) for v in sums]  # Fraction(NaN) raises ValueError
    step_scale = scale / g  # exact: g is a power of two
    _rational(step_scale)
    # The core refuses noise beyond 2^53 steps, so every output is below this bound.
    if steps and (max(abs(n) for n in steps) + 2**53) * gf > _MAX_DOUBLE:
        raise ValueError("a sum is too large to release as a double; clamp the values")
    return PreparedSums(steps, g, step_scale)


def release_sums(prepared: PreparedSums, *, rng: Rng | None = None) -> list[float]:
    """Add the noise to prepared sums: (grid steps + noise) exactly, rounded once."""
    gf = Fraction(prepared.grid)
    steps = prepared.steps
    noise = discrete_laplace(prepared.step_scale, len(steps), rng=rng) if steps else []
    return [float((n + int(y)) * gf) for n, y in zip(steps, noise, strict=True)]


def noisy_exact_sums(
    sums: Sequence[Fraction | float | int],
    sensitivity: float,
    epsilon: Epsilon,
    *,
    coordinates: int = 1,
    rng: Rng | None = None,
) -> list[float]:
    """Release exact (Fraction) sums + Laplace noise on the grid (no budget charge here).

    Each sum is rounded to the grid from its exact value, so floating-point summation
    error never enters the sensitivity (Casacuberta et al. 2022 show how float sums break
    the usual bound); one individual may change `coordinates` of the sums by `sensitivity`
    in total. The result (grid steps + noise) is exact and rounded once to a double.
    """
    prepared = prepare_exact_sums(sums, sensitivity, epsilon, coordinates=coordinates)
    return release_sums(prepared, rng=rng)


def _check_bounds(lower: float, upper: float) -> tuple[float, float]:
    """Finite bounds with lower < upper (as floats), or ValueError."""
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds need finite lower < upper, got [{lo}, {hi}]")
    return lo, hi


def _clamped(values: Any, lower: float, upper: float) -> Any:
    """values as a flat float array clamped to [lower, upper]; NaN raises ValueError."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(x).any():
        raise ValueError("values contain NaN; drop or impute them before a release")
    return np.clip(x, lower, upper)


def _centre(lower: float, upper: float) -> tuple[float, float]:
    """(mid, bound): a double mid and the smallest double >= |x - mid| on [lower, upper]."""
    mid = lower / 2.0 + upper / 2.0  # (lower + upper) / 2 overflows near the largest double
    lo, hi, m = Fraction(lower), Fraction(upper), Fraction(mid)
    return mid, _ceil_double(max(hi - m, m - lo))


def noisy_sum(
    values: Any,
    lower: float,
    upper: float,
    epsilon: float,
    *,
    budget: PrivacyBudget | None = None,
    label: str = "sum",
    rng: Rng | None = None,
) -> float:
    """Release the sum of per-patient values clamped to [lower, upper] (one value per patient)."""
    lower, upper = _check_bounds(lower, upper)
    x = _clamped(values, lower, upper)
    # Adding or removing a patient changes the clamped sum by at most max(|lower|, |upper|).
    sensitivity = max(abs(lower), abs(upper))
    exact = sum((Fraction(v) for v in x.tolist()), Fraction(0))
    # Everything that can fail does so before the charge: nothing is spent on an error.
    prepared = prepare_exact_sums([exact], sensitivity, epsilon)
    if budget is not None:
        budget.charge(epsilon, label)
    return release_sums(prepared, rng=rng)[0]


def noisy_mean(
    values: Any,
    lower: float,
    upper: float,
    epsilon: float,
    *,
    budget: PrivacyBudget | None = None,
    label: str = "mean",
    rng: Rng | None = None,
) -> float:
    """Release the mean of per-patient values clamped to [lower, upper]: epsilon/2 each for
    a centred noisy sum and a noisy count, their ratio clamped to the bounds."""
    lower, upper = _check_bounds(lower, upper)
    half = _noise_epsilon(epsilon) / 2  # exact halves: together never above the charge
    x = _clamped(values, lower, upper)
    # Centring makes one patient move the sum by at most half the range, not max(|bound|).
    mid, bound = _centre(lower, upper)
    fmid = Fraction(mid)
    exact = sum((Fraction(v) - fmid for v in x.tolist()), Fraction(0))
    prepared = prepare_exact_sums([exact], bound, half)
    n_scale = count_scale(1, half)
    if budget is not None:
        budget.charge(epsilon, label)
    s = release_sums(prepared, rng=rng)[0]
    n = len(x) + int(discrete_laplace(n_scale, rng=rng))
    if n <= 0:
        return mid
    return min(upper, max(lower, mid + s / n))


def noisy_value(
    value: float,
    sensitivity: float,
    epsilon: float,
    lower: float,
    upper: float,
    *,
    rng: Rng | None = None,
) -> float:
    """Clamp one numeric header value to [lower, upper] and add float-safe Laplace noise.

    A patient's header value (PatientWeight, PatientSize) repeats in every image; fresh noise
    per image would let anyone average it away. Pass ``rng=keyed_rng(secret, patient, tag,
    value)`` so every copy of one value gets the same noise (one release, epsilon once).
    """
    lower, upper = _check_bounds(lower, upper)
    v = float(value)
    if math.isnan(v):
        raise ValueError("cannot add noise to NaN")
    clamped = min(upper, max(lower, v))
    # The clamped value moves by at most upper - lower, whatever sensitivity is claimed.
    span = _ceil_double(Fraction(upper) - Fraction(lower))  # a float difference may round down
    sens = min(_check_positive("sensitivity", sensitivity), span)
    return float(add_laplace([clamped], sens, epsilon, rng=rng)[0])


def keyed_rng(secret: bytes, *context: str) -> Rng:
    """A generator determined by a secret key and a context (HMAC-SHA256 seed).

    Private as long as the secret is: the same (secret, context) always gives the same
    noise, which is what repeated copies of one released value need, and without the
    secret the stream is unpredictable ChaCha20. Not for independent releases: those must
    use different contexts (or the OS-seeded default generator).
    """
    if len(secret) < 16:
        raise ValueError("the secret must have at least 16 bytes")
    # Length-prefixed parts: no two different contexts give the same message.
    parts = [p.encode("utf-8") for p in context]
    msg = b"medveil.dp.keyed_rng" + b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    return Rng.insecure_from_seed(hmac.new(bytes(secret), msg, hashlib.sha256).digest())


# --- privacy budget ---------------------------------------------------------------------

# Epsilons are accounted in integer units of 1e-12, so sums are exact. An epsilon given
# as a float stands for the decimal it prints as (the float 0.1 is 1/10, what was typed),
# so ten charges of 0.1 spend exactly 1.0; the noise of every release is calibrated to the
# smaller of the float and that decimal (_noise_epsilon), never to more than is charged.
# A charge rounds up to the next unit, so any positive epsilon costs at least 1e-12 (none
# is ever free); totals round down.
_UNIT = 10**12


def _units_up(eps: Epsilon) -> int:
    """The charge of eps in units, rounded up: >= 1 for every positive epsilon."""
    return math.ceil(_decimal(eps) * _UNIT)


def _units_down(eps: Epsilon) -> int:
    """A total in units, rounded down (at most what SQLite's INTEGER holds)."""
    units = math.floor(_decimal(eps, "total_epsilon") * _UNIT)
    if units > _MAX_UNITS:
        raise ValueError(f"total_epsilon must be at most {_MAX_UNITS // _UNIT}")
    return units


_MAX_UNITS = 2**63 - 1


def _legacy_units_down(eps: float) -> int:
    """How totals were stored before decimals: floor of the float (kept so old catalogs
    still accept the total they were created with)."""
    return math.floor(Fraction(eps) * _UNIT)


@dataclass(frozen=True)
class LedgerEntry:
    """One charged release: when, how much epsilon, and what it was for."""

    at: float
    epsilon: float
    label: str


class PrivacyBudget:
    """A total epsilon spent by sequential composition; every release is charged first.

    With ``path`` the budget lives in that SQLite file (tables ``dp_budget`` and
    ``dp_ledger``) and each charge is a ``BEGIN IMMEDIATE`` transaction that re-reads what
    was spent, so concurrent processes serialise and can never overspend together. The
    total is fixed when the budget is first created; later opens must agree with it or
    omit it. Without ``path`` the budget lives in memory only.
    """

    def __init__(
        self,
        total_epsilon: float | None = None,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str = "default",
    ) -> None:
        self.name = name
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._mem: list[tuple[LedgerEntry, int]] = []  # (entry, units charged)
        if total_epsilon is not None:
            _check_positive("total_epsilon", total_epsilon)
        if self._path is None:
            if total_epsilon is None:
                raise ValueError("an in-memory PrivacyBudget needs total_epsilon")
            self._total_units = _units_down(total_epsilon)
            return
        with self._transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS dp_budget (name TEXT PRIMARY KEY, "
                "total_units INTEGER NOT NULL, created REAL NOT NULL)"
            )
            con.execute(
                "CREATE TABLE IF NOT EXISTS dp_ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "name TEXT NOT NULL, units INTEGER NOT NULL, label TEXT NOT NULL, at REAL NOT NULL)"
            )
            row = con.execute(
                "SELECT total_units FROM dp_budget WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                if total_epsilon is None:
                    raise MedveilError(
                        f"no privacy budget '{name}' in {self._path}; create it by giving a "
                        "total epsilon (e.g. --total-epsilon 4)"
                    )
                self._total_units = _units_down(total_epsilon)
                con.execute(
                    "INSERT INTO dp_budget (name, total_units, created) VALUES (?, ?, ?)",
                    (name, self._total_units, time.time()),
                )
            else:
                self._total_units = int(row[0])
                given = (
                    set()
                    if total_epsilon is None
                    else {_units_down(total_epsilon), _legacy_units_down(total_epsilon)}
                )
                if given and self._total_units not in given:
                    raise MedveilError(
                        f"privacy budget '{name}' in {self._path} has total epsilon "
                        f"{self._total_units / _UNIT:g}, not {total_epsilon:g}; a cohort's total "
                        "is fixed when first set (omit --total-epsilon to use it)"
                    )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self._path is not None
        con = sqlite3.connect(self._path, timeout=60.0, isolation_level=None)
        try:
            # IMMEDIATE takes the write lock before reading, so two charges cannot both
            # read the same "spent" and both succeed.
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @property
    def total(self) -> float:
        """The total epsilon of this budget."""
        return self._total_units / _UNIT

    def _spent_units(self, con: sqlite3.Connection | None = None) -> int:
        if self._path is None:
            return sum(u for _, u in self._mem)
        assert con is not None
        row = con.execute(
            "SELECT COALESCE(SUM(units), 0) FROM dp_ledger WHERE name = ?", (self.name,)
        ).fetchone()
        return int(row[0])

    @property
    def spent(self) -> float:
        """Epsilon charged so far (by every process sharing the catalog)."""
        if self._path is None:
            with self._lock:
                return self._spent_units() / _UNIT
        with self._transaction() as con:
            return self._spent_units(con) / _UNIT

    @property
    def remaining(self) -> float:
        """Epsilon still available."""
        return max(0.0, self.total - self.spent)

    def charge(self, epsilon: Epsilon, label: str = "release") -> None:
        """Charge epsilon for one release, or raise BudgetExceededError and charge nothing."""
        units = _units_up(epsilon)
        if self._path is None:
            with self._lock:
                spent = self._spent_units()
                self._refuse_if_over(spent, units, epsilon, label)
                self._mem.append((LedgerEntry(time.time(), units / _UNIT, label), units))
            return
        with self._transaction() as con:
            spent = self._spent_units(con)
            self._refuse_if_over(spent, units, epsilon, label)
            con.execute(
                "INSERT INTO dp_ledger (name, units, label, at) VALUES (?, ?, ?, ?)",
                (self.name, units, label, time.time()),
            )

    def _refuse_if_over(self, spent: int, units: int, epsilon: Epsilon, label: str) -> None:
        if spent + units > self._total_units:
            left = max(0, self._total_units - spent) / _UNIT
            raise BudgetExceededError(
                f"query '{label}' needs epsilon {float(epsilon):g} but only {left:g} of the total "
                f"{self.total:g} is left (spent {spent / _UNIT:g}); nothing was released. "
                "Ask with a smaller epsilon, or accept that this cohort's budget is used up."
            )

    def ledger(self) -> list[LedgerEntry]:
        """Every charge so far, oldest first."""
        if self._path is None:
            with self._lock:
                return [e for e, _ in self._mem]
        with self._transaction() as con:
            rows = con.execute(
                "SELECT at, units, label FROM dp_ledger WHERE name = ? ORDER BY id", (self.name,)
            ).fetchall()
        return [LedgerEntry(float(a), int(u) / _UNIT, str(lab)) for a, u, lab in rows]

    def charge_all(self, parts: Sequence[tuple[Epsilon, str]]) -> None:
        """Charge several releases atomically: all of them or none."""
        total = sum((_decimal(e) for e, _ in parts), Fraction(0))
        if self._path is None:
            with self._lock:
                need = sum(_units_up(e) for e, _ in parts)
                self._refuse_if_over(
                    self._spent_units(), need, total, "+".join(s for _, s in parts)
                )
                self._mem.extend(
                    (LedgerEntry(time.time(), _units_up(e) / _UNIT, s), _units_up(e))
                    for e, s in parts
                )
            return
        with self._transaction() as con:
            need = sum(_units_up(e) for e, _ in parts)
            self._refuse_if_over(self._spent_units(con), need, total, "+".join(s for _, s in parts))
            for e, s in parts:
                con.execute(
                    "INSERT INTO dp_ledger (name, units, label, at) VALUES (?, ?, ?, ?)",
                    (self.name, _units_up(e), s, time.time()),
                )

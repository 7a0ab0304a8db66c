"""Bounds for statistics of random samples, each with a stated false-alarm rate: the chance that
correct code fails the check (two-sided, half in each tail)."""

from scipy import stats

FALSE_ALARM = 1e-6  # per check


def binomial_bounds(n: int, p: float, false_alarm: float = FALSE_ALARM) -> tuple[int, int]:
  """(low, high): a count of Binomial(n, p) lies in [low, high] but with `false_alarm` chance."""
  low, high = stats.binom.interval(1 - false_alarm, n, p)
  return int(low), int(high)


def ks_bound(n: int, false_alarm: float = FALSE_ALARM) -> float:
  """The Kolmogorov-Smirnov statistic of n draws from the distribution tested exceeds this with
  `false_alarm` chance."""
  return float(stats.kstwo.isf(false_alarm, n))

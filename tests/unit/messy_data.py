"""A messy public-style table for the tests of what data means: blanks, NA markers, categories, dates."""

from __future__ import annotations

import numpy as np


def messy_csv(rows: int, seed: int = 0, *, blank_city: float = 0.1, start: str = "2020-01-01") -> bytes:
    """A public-style customers export with the mess real ones have, as CSV bytes.

    ``signup`` is an ISO date within three years of ``start``; ``city`` is blank in about
    ``blank_city`` of the rows and ``NA`` in 1%; ``income`` is blank in 5%; ``spend`` grows by
    one a day after 2020-01-01, plus 50 on the ``pro`` plan, plus noise.
    """
    rng = np.random.default_rng(seed)
    signup = np.datetime64(start, "D") + rng.integers(0, 3 * 365, rows)
    city = rng.choice(["berlin", "paris", "rome", "new york"], rows).astype(object)
    draw = rng.random(rows)
    city[draw < blank_city + 0.01] = "NA"
    city[draw < blank_city] = ""
    plan = rng.choice(["basic", "pro"], rows)
    income = np.char.mod("%.2f", rng.normal(50_000, 8_000, rows)).astype(object)
    income[rng.random(rows) < 0.05] = ""
    days = (signup - np.datetime64("2020-01-01", "D")).astype(np.float64)
    spend = days + np.where(plan == "pro", 50.0, 0.0) + rng.normal(0, 5, rows)
    lines = ["id,signup,city,plan,income,spend"]
    lines += [f"{i},{signup[i]},{city[i]},{plan[i]},{income[i]},{spend[i]:.2f}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()

"""Numbers as a hostile or broken exchange answer could give them, for property tests."""

from __future__ import annotations

from hypothesis import strategies as st

# a row's value as a hostile or broken answer could give it: Decimal's extremes, signs, zero,
# text that is no number, nothing; and plain values
HOSTILE_NUMBERS = st.one_of(
    st.sampled_from(["0", "-0", "1e-999999", "1e999999", "-1e-999999", "9e999998", "1E+5",
                     "NaN", "Infinity", "-Infinity", "", "abc", "0.00000001", "1", "0.5"]),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.none(),
)  # fmt: skip

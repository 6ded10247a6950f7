"""The agent's one flag-names-to-bits helper (guest/flags.py), as every area uses it."""

from __future__ import annotations

import os

import pytest

from guest.flags import flag_bits, from_os

KNOWN = {"SQPOLL": 2, "IOPOLL": 1, "CQSIZE": 8}


def test_names_with_or_without_the_prefix_in_any_case() -> None:
    assert flag_bits(["SQPOLL", "IORING_SETUP_IOPOLL", "cqsize"], KNOWN,
                     prefix="IORING_SETUP_") == 11


def test_a_raw_int_passes_and_none_is_zero() -> None:
    assert flag_bits(1 << 30, KNOWN) == 1 << 30
    assert flag_bits(None, KNOWN) == 0 and flag_bits([], KNOWN) == 0


def test_an_unknown_name_says_what_is_known() -> None:
    with pytest.raises(ValueError, match=r"unknown opt 'pinn' \(known: CQSIZE, IOPOLL, SQPOLL\)"):
        flag_bits(["pinn"], KNOWN, "opt")


def test_os_flags_by_their_full_names_only() -> None:
    assert flag_bits(["O_NONBLOCK", "O_CLOEXEC"], from_os("O_")) == os.O_NONBLOCK | os.O_CLOEXEC
    with pytest.raises(ValueError):
        flag_bits(["NONBLOCK"], from_os("O_"))

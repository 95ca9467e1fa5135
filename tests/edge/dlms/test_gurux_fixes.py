"""The gurux server fixes refuse an unpinned gurux-dlms, and the AARE they repair is valid BER."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.dlms import gurux_fixes
from edge.dlms.cosem_server import aarq_invocation_counter


def test_installed_version_is_the_pinned_one() -> None:
    assert gurux_fixes.check_version() == gurux_fixes.PINNED_GURUX_VERSION


def test_other_version_is_refused_with_a_clear_error() -> None:
    with pytest.raises(gurux_fixes.GuruxVersionError, match=r"gurux-dlms 1\.0\.999 .* 1\.0\.203"):
        gurux_fixes.check_version("1.0.999")


@pytest.mark.parametrize("distribution", ["gurux-dlms", "gurux_dlms", "paho-mqtt", "PyYAML", "pyserial", "pydantic",
                                          "pytest", "not-a-distribution-here"])
def test_the_installed_version_is_importlib_metadatas(distribution: str) -> None:
    import importlib.metadata

    try:
        expected: str | None = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        expected = None
    assert gurux_fixes.installed_version(distribution) == expected


def test_the_version_check_does_not_load_importlib_metadata() -> None:
    """Issue 15 (RSS): importlib.metadata (email, zipfile, csv) is about 2 MiB nothing else on the
    concentrator's path needs. A fresh process: this one has it already."""
    code = ("import sys\nfrom edge.dlms import gurux_fixes\nprint(gurux_fixes.check_version(), "
            "'importlib.metadata' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == [gurux_fixes.PINNED_GURUX_VERSION, "False"], done.stderr


def test_aarq_invocation_counter_parsing() -> None:
    # AARQ with user-information holding a glo-initiateRequest: SC 0x30, IC 0x0000012C.
    glo = bytes([0x21, 0x07, 0x30, 0x00, 0x00, 0x01, 0x2C, 0xAA, 0xBB])
    user_info = bytes([0xBE, len(glo) + 2, 0x04, len(glo)]) + glo
    context = bytes([0xA1, 0x09, 0x06, 0x07, 0x60, 0x85, 0x74, 0x05, 0x08, 0x01, 0x03])
    body = context + user_info
    assert aarq_invocation_counter(bytes([0x60, len(body)]) + body) == 300
    assert aarq_invocation_counter(bytes([0x60, len(context)]) + context) is None
    assert aarq_invocation_counter(b"\xc0\x01") is None


def test_responding_authentication_value_gets_its_ber_length() -> None:
    challenge = bytes(range(16))
    system_title = bytes([0xA4, 0x0A, 0x04, 0x08]) + b"GRW00001"
    # What generateAARE writes: AA 10 80 10 <challenge>, then a user-information element after it.
    broken = bytes([0xAA, 0x10, 0x80, 0x10]) + challenge
    user_info = bytes([0xBE, 0x04, 0x04, 0x02, 0x08, 0x00])
    body = system_title + broken + user_info
    fixed = gurux_fixes.correct_responding_authentication(bytes([0x61, len(body)]) + body)
    assert fixed == bytes([0x61, len(body)]) + system_title + bytes([0xAA, 0x12, 0x80, 0x10]) + challenge + user_info
    # Already right (or no challenge at all): unchanged; not an AARE: unchanged.
    assert gurux_fixes.correct_responding_authentication(fixed) == fixed
    plain = bytes([0x61, len(user_info)]) + user_info
    assert gurux_fixes.correct_responding_authentication(plain) == plain
    assert gurux_fixes.correct_responding_authentication(b"\xc4\x01") == b"\xc4\x01"

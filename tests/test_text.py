"""Strings from files are shown escaped (issue 13 item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vqcodec.text import printable

VQCODEC = str(Path(sys.executable).with_name("vqcodec"))


def test_printable_escapes_control_and_format_characters_only() -> None:
    assert printable("default") == "default" and printable("modèle ø") == "modèle ø"
    assert printable("a\x1b]0;x\x07b") == "a\\x1b]0;x\\x07b"
    assert printable("\u202edlrow") == "\\u202edlrow" and printable("line\nbreak") == "line\\nbreak"


def test_cli_messages_escape_names_that_come_from_outside(tmp_path: Path) -> None:
    evil = tmp_path / "a\x1b[2Jb.vqz"
    evil.write_bytes(b"\x89VQZ\x02junk")
    result = subprocess.run([VQCODEC, "info", str(evil), str(tmp_path / "gone\x07.vqz")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "a\\x1b[2Jb.vqz" in result.stderr and "gone\\x07.vqz" in result.stderr

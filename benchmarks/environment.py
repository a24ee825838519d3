"""Where and with what a benchmark ran: machine, library versions, thread counts and date."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from PIL import features

PACKAGES = ("vqcodec", "torch", "numpy", "pillow", "pytorch-msssim", "scipy", "matplotlib")
PILLOW_LIBRARIES = {"jpg": "libjpeg-turbo", "webp": "libwebp", "avif": "libavif", "jpg_2000": "openjpeg"}


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_capability() -> str:
    """The vector extensions torch uses here and the arithmetic vqcodec's inference runs in, e.g.
    "AVX512, bfloat16 (AMX)": speed depends on both."""
    import torch

    from vqcodec import inference

    arithmetic = inference.precision()
    if arithmetic == "bfloat16":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        arithmetic += " (AMX)" if amx else " (AVX-512 BF16)" if inference.native_bfloat16() else " (emulated)"
    return f"{torch.backends.cpu.get_cpu_capability()}, {arithmetic}"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe(threads: int) -> dict[str, object]:
    """A JSON-ready description of this machine and run: CPU, cores, load, memory, versions, UTC date."""
    memory = _memory_gib()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_capability": _cpu_capability(),
        "cpus_usable": usable_cpus(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "memory_gib": round(memory, 1) if memory is not None else None,
        "threads": threads,
        "packages": {p: _version(p) for p in PACKAGES},
        "pillow_libraries": {name: str(features.version(key)) for key, name in PILLOW_LIBRARIES.items()},
    }

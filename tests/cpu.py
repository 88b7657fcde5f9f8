"""What the tests need to know of this CPU: whether onnxruntime's uint8 x int8 kernels add
pairs of products in 16 bits (x86 without AVX-512 VNNI or AVX-VNNI), so that full-range
int8 weights saturate."""

from __future__ import annotations

import platform
from pathlib import Path

VNNI = {"avx512_vnni", "avx_vnni"}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def u8s8_saturates() -> bool:
    flags = cpu_flags()
    return platform.machine() in ("x86_64", "AMD64") and bool(flags) and not flags & VNNI


SATURATION = "onnxruntime's u8s8 kernels saturate only on x86 CPUs without VNNI (flags read from /proc/cpuinfo)"

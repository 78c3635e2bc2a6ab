"""What machine a bench ran on: every speed figure names its CPU (model name, AMX or not)."""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_line() -> str:
    """e.g. ``AMD EPYC; 2 CPUs; AMX no; AVX512-BF16 yes; torch 2 threads; load 0.12``."""
    model = platform.processor() or "unknown CPU"
    flags = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = value
    except (OSError, subprocess.SubprocessError):
        pass
    amx = "amx_bf16" in flags or "amx_tile" in flags
    bf16 = "avx512_bf16" in flags
    try:
        import torch

        threads = f"torch {torch.get_num_threads()} threads"
    except ImportError:  # pragma: no cover
        threads = "no torch"
    return (
        f"{model}; {os.cpu_count()} CPUs; AMX {'yes' if amx else 'no'}; AVX512-BF16 {'yes' if bf16 else 'no'}; "
        f"{threads}; load average {os.getloadavg()[0]:.2f}"
    )

#!/usr/bin/env python3
"""Writes Core/Formats/Gguf/IqGrids.bin: the lattice tables of GGUF's IQ1/IQ2/IQ3 types, as the format defines them.

The IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S and IQ1_S/IQ1_M blocks hold indices into fixed tables of 8-value (IQ2, IQ1)
or 4-value (IQ3) points that ggml defines as data (ggml-common.h: iq2xxs_grid ... iq1s_grid, MIT licensed); no rule
derives them. This copies them byte for byte out of the ggml library that LLamaSharp's NuGet package ships (the
llama.cpp our tests use as the oracle), by the symbols' addresses in its ELF symbol table, in this order:
iq2xxs_grid (256 x 8 bytes), iq2xs_grid (512 x 8), iq2s_grid (1024 x 8), iq3xxs_grid (256 x 4), iq3s_grid (512 x 4),
iq1s_grid (2048 x 8). It also checks ksigns_iq2xs against the rule the C# code computes it by.

  python3 tools/iq-grids.py [path/to/libggml-base.so]
"""
import glob
import os
import struct
import subprocess
import sys

TABLES = [("iq2xxs_grid", 2048), ("iq2xs_grid", 4096), ("iq2s_grid", 8192), ("iq3xxs_grid", 1024), ("iq3s_grid", 2048), ("iq1s_grid", 16384)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def library():
    if len(sys.argv) > 1:
        return sys.argv[1]
    found = sorted(glob.glob(os.path.expanduser("~/.nuget/packages/llamasharp.backend.cpu/*/LLamaSharpRuntimes/linux-x64/native/noavx/libggml-base.so")))
    if not found:
        sys.exit("no libggml-base.so: restore the tests (dotnet restore tests) or pass its path")
    return found[-1]


def symbols(path):
    """name -> (address, size) of the library's data objects, from readelf."""
    out = subprocess.run(["readelf", "-s", "-W", path], check=True, capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[3] == "OBJECT":
            table[parts[7]] = (int(parts[1], 16), int(parts[2]))
    return table


def file_offset(path, address):
    """The file offset of a virtual address, through the section that holds it."""
    out = subprocess.run(["readelf", "-S", "-W", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) >= 6 and parts[0].startswith("[") and parts[0] != "[Nr]":
            try:
                start, offset, size = int(parts[3], 16), int(parts[4], 16), int(parts[5], 16)
            except ValueError:
                continue
            if start <= address < start + size:
                return address - start + offset
    sys.exit(f"{path}: no section holds address {address:#x}")


def main():
    path = library()
    table = symbols(path)
    data = open(path, "rb").read()
    out = bytearray()
    for name, size in TABLES:
        if name not in table or table[name][1] != size:
            sys.exit(f"{path}: no {name} of {size} bytes")
        at = file_offset(path, table[name][0])
        out += data[at:at + size]

    at = file_offset(path, table["ksigns_iq2xs"][0])
    signs = data[at:at + 128]
    rule = bytes(i | (128 if bin(i).count("1") % 2 else 0) for i in range(128))
    if signs != rule:
        sys.exit("ksigns_iq2xs is not i | parity(i) << 7")

    target = os.path.join(ROOT, "Core", "Formats", "Gguf", "IqGrids.bin")
    open(target, "wb").write(out)
    print(f"{target}: {len(out)} bytes from {path}")


if __name__ == "__main__":
    main()

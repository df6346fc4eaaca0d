#!/usr/bin/env python3
"""ncu-step.py — per-kernel time of one decode step from an ncu CSV.

Input: the CSV that `ncu --csv --page raw --metrics gpu__time_duration.sum,
dram__bytes_read.sum,smsp__inst_executed.sum orcd-bench ...` writes (as
tools/gpu-run.sh's GPU_RUN_NCU does; orcd-bench's JSON before it is skipped).
Output: for the last step (from the last embed_kernel to the end), one line
per kernel name and grid: launches, total and mean µs, MB read from DRAM a
launch, GB/s, thousands of warp instructions a launch; then the total. ncu
runs kernels one at a time, so these are times in isolation (no overlap by
programmatic dependent launch), an upper bound on each kernel's share.

  tools/ncu-step.py ncu-f16.csv [more.csv ...]
"""
import collections
import csv
import io
import re
import sys

SCALE_T = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}
SCALE_B = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}


def num(s):
    return float(s.replace(",", ""))


def main(paths):
    for path in paths:
        txt = open(path).read()
        rows = list(csv.reader(io.StringIO(txt[txt.index('"ID","Process ID"'):])))
        hdr, units = rows[0], rows[1]
        data = [r for r in rows[2:] if len(r) == len(hdr)]
        ki, gi = hdr.index("Kernel Name"), hdr.index("Grid Size")
        di, bi, ii = (hdr.index(m) for m in ("gpu__time_duration.sum", "dram__bytes_read.sum", "smsp__inst_executed.sum"))
        st, sb = SCALE_T[units[di]], SCALE_B[units[bi]]
        starts = [i for i, r in enumerate(data) if r[ki].startswith("embed_kernel")]
        step = data[starts[-1]:] if starts else data
        agg = collections.OrderedDict()
        for r in step:
            a = agg.setdefault(re.sub(r"\(.*", "", r[ki]).strip() + " " + r[gi], [0, 0.0, 0.0, 0.0])
            a[0] += 1
            a[1] += num(r[di]) * st
            a[2] += num(r[bi]) * sb
            a[3] += num(r[ii])
        print(f"{path}: {len(step)} kernels in the last step")
        for k, (n, ns, b, ins) in agg.items():
            print(f"  {k:50s} n={n:3d} {ns / 1e3:8.1f} us  mean {ns / n / 1e3:6.2f} us  {b / n / 1e6:7.2f} MB  "
                  f"{b / ns:6.0f} GB/s  {ins / n / 1e3:8.1f} K inst")
        print(f"  total {sum(v[1] for v in agg.values()) / 1e3:.1f} us")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

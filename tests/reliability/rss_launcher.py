"""`sinkframe` with its peak resident set size printed at exit: `python rss_launcher.py run ...`.

The peak is the kernel's high-water mark of this process's memory (VmHWM in
/proc/self/status), so a short spike is not missed the way sampling would miss
it. Not getrusage's ru_maxrss: Linux carries that across execve from the memory
of the process that started this one (with vfork, as subprocess uses, the test
runner's own), so it showed pytest's peak late in a suite, not the sink's.
"""
import atexit
import re
import sys


def report() -> None:
    with open("/proc/self/status") as status:
        peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1))
    print(f"PEAK_RSS_KIB={peak_kib}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atexit.register(report)
    from sinkframe.cli import main

    sys.argv[0] = "sinkframe"
    main()

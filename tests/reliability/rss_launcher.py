"""`sinkframe` with its peak resident set size printed at exit: `python rss_launcher.py run ...`.

The peak (ru_maxrss) is what the kernel measured for this process over its whole
life, so a short spike is not missed the way sampling /proc would miss it.
"""
import atexit
import resource
import sys


def report() -> None:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"PEAK_RSS_KIB={peak_kib}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atexit.register(report)
    from sinkframe.cli import main

    sys.argv[0] = "sinkframe"
    main()

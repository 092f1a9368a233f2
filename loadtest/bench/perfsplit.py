#!/usr/bin/env python3
"""Splits `perf script -F comm,tid,ip,sym` samples of the node by component:
each sample goes to the first bucket whose marker appears in its stack (leaf
first is not used: the outermost known frame decides), and reports the share
of all samples. usage: perfsplit.py perf.script"""
import sys
from collections import Counter

# ordered: the first marker found anywhere in the stack wins
BUCKETS = [
    ("GC (mark workers, sweeping, assists)", ("gcBgMarkWorker", "gcBgMarkStartWorkers", "gcenable", "bgsweep",
                                              "gcAssistAlloc", "bgscavenge")),
    ("sysmon (runtime monitor thread)", ("runtime.sysmon",)),
    ("scheduler idle/wake (findRunnable, futex, netpoll)", ("runtime.findRunnable", "runtime.stopm", "runtime.schedule")),
    ("edge: RTMP read + parse", ("edge.(*rtmpServer)",)),
    ("edge: RTSP", ("edge.(*rtspServer)", "gortsplib")),
    ("edge: publish to NATS", ("edge.", "bus.(*Publisher)")),
    ("NATS server (embedded)", ("nats-server",)),
    ("origin: HLS muxing", ("origin.(*stream)", "gohlslib/v2.(*muxer")),
    ("origin: other", ("origin.",)),
    ("NATS client (read/flush loops, async delivery)", ("nats%2ego", "nats.go")),
    ("registry watches (KV)", ("bus.watch",)),
    ("hls cache + HTTP", ("hlscache.", "net/http.")),
]

def main(path):
    counts = Counter()
    total = 0
    stack = []
    def flush():
        nonlocal total
        if not stack:
            return
        total += 1
        joined = "\n".join(stack)
        for name, markers in BUCKETS:
            if any(m in joined for m in markers):
                counts[name] += 1
                break
        else:
            counts["other (" + (stack[-1] if stack else "?") + ")"] += 1
    for line in open(path, errors="replace"):
        if not line.strip():
            flush(); stack = []
            continue
        if not line.startswith(("\t", " ")):
            flush(); stack = []
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            stack.append(parts[1].strip())
    flush()
    rows = counts.most_common()
    shown = 0
    for name, c in rows:
        if name.startswith("other") and c / total < 0.01:
            continue
        print(f"{100*c/total:5.1f}%  {name}")
        shown += c
    print(f"{100*(total-shown)/total:5.1f}%  other (each < 1%)")
    print(f"{total} samples")

main(sys.argv[1])

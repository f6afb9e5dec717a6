"""Sorts perf samples of one process into categories of work.

Reads `perf script -F pid,tid,ip,sym` (with call chains) on stdin. Kernel
call chains are complete, so kernel samples are sorted by the system call
or interrupt they serve; the relay is built without frame pointers, so a
user-space sample is sorted by the function it landed in. Shares become µs
per visit with the relay's CPU per visit from the benchmark's table.
"""

import collections
import re
import sys

PID, BENCH_TABLE = sys.argv[1], sys.argv[2]

# (category, patterns on any kernel frame), first match wins.
KERNEL = [
    ("kernel: spool fsync", ("fdatasync", "ext4_sync_file", "do_fsync")),
    ("kernel: spool write and read", ("ext4_", "filemap_", "pread", "generic_perform_write")),
    ("kernel: network send", ("tcp_sendmsg", "sock_write_iter", "__sys_sendto", "do_writev")),
    ("kernel: network receive", ("tcp_recvmsg", "sock_read_iter", "__sys_recvfrom", "net_rx_action", "do_softirq")),
    ("kernel: thread wake-ups and sleeps", ("futex", "schedule", "finish_task_switch", "try_to_wake_up")),
    ("kernel: event loop (epoll)", ("epoll",)),
    ("kernel: page faults", ("exc_page_fault", "handle_mm_fault")),
    ("kernel: timers and interrupts", ("apic_timer", "irq", "hrtimer")),
]
# (category, pattern on the user-space leaf function), first match wins.
USER = [
    ("JSON: parse, normalize, serialize", r"serde_json|serde_core|kobra_relay::visit|jiff"),
    ("allocator (mimalloc)", r"^_?mi_|mimalloc"),
    ("memory copies", r"memmove|memcpy|memset|memcmp"),
    ("SHA-256 and CRC32", r"ring_core|sha256|crc32"),
    ("HTTP (hyper)", r"hyper|^http::|httparse"),
    ("AMQP (lapin, framing)", r"lapin|amq_protocol|cookie_factory|nom::|flume"),
    ("async runtime (tokio)", r"tokio|futures_|event_listener|async_"),
    ("spool and publisher logic", r"kobra_relay::(spool|publisher)"),
    ("metrics and logs", r"prometheus|tracing"),
]


def category(frames):
    kernel = [f for f in frames if f.startswith("[k]")]
    if kernel:
        for name, patterns in KERNEL:
            if any(p in f for f in kernel for p in patterns):
                return name
        return "kernel: other"
    leaf = frames[0] if frames else ""
    for name, pattern in USER:
        if re.search(pattern, leaf):
            return name
    return "other user space"


def samples(stream):
    """Each sample of PID as its frames, innermost first; kernel frames
    (addresses in the kernel's half) are marked with [k]."""
    pid, frames = None, []
    for line in stream:
        if line.startswith("\t"):
            parts = line.split(None, 1)
            if pid == PID and len(parts) == 2:
                address, symbol = parts
                symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol.strip())
                frames.append(("[k]" if address.startswith("ffffffff") else "") + symbol)
            continue
        if pid == PID:
            yield frames
        head = line.split()
        pid = head[0].split("/")[0] if head and "/" in head[0] else None
        frames = []
    if pid == PID:
        yield frames


def relay_us_per_visit():
    """The relay row of an --only run (there is one)."""
    for line in open(BENCH_TABLE, encoding="utf-8"):
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 5 and cells[2].startswith("relay, "):
            return float(cells[5])
    return None


counts = collections.Counter(category(f) for f in samples(sys.stdin))
total = sum(counts.values())
if total == 0:
    sys.exit(f"no samples of process {PID}")
per_visit = relay_us_per_visit()
print(f"Relay process {PID}: {total} samples", end="")
print(f", {per_visit:.0f} µs of CPU per visit." if per_visit else ".")
print()
print("| category | share | µs per visit |")
print("|---|---:|---:|")
for name, n in counts.most_common():
    us = f"{per_visit * n / total:.1f}" if per_visit else "–"
    print(f"| {name} | {100 * n / total:.1f} % | {us} |")

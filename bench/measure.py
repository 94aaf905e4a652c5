"""measure.py - one benchmark run and the CPU it cost, for billing.sh,
lines.sh and routing.sh.

    measure.py CASE SERVER_PID POSTMASTER_PID WARMUP_S SECS [--label L] [--keeper PID] -- COMMAND...

Runs COMMAND (bench_load or pgbench), and over its measured window (after
the warm-up) samples the CPU of the server, of PostgreSQL (the postmaster,
the backends it reaped, its live children), of COMMAND, of the keeper when
one is named, and of the whole machine. Prints COMMAND's output (pgbench's
turned into bench_load's lines:
    bench <case> rate=<tx/s> p50_ms=- p99_ms=- lat_avg_ms=<x> errors=<n>
    calls <case> total=<n> ok=<n> failed=<n>)
and
    cpu <case> <L>_cores= pg_cores= load_cores= [keeper_cores=] others_cores= steal_cores=
        <L>_us_per_call= pg_us_per_call= load_us_per_call= total_us_per_call=
with L the server's label (default "server").
"""
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid):
    """(utime + stime in seconds, parent pid); (0, 0) once gone."""
    try:
        v = stat_fields(pid)
        return (int(v[11]) + int(v[12])) / TICK, int(v[1])
    except (OSError, IndexError):
        return 0.0, 0


def reaped(pid):
    """The CPU of the children a process has waited for (cutime + cstime)."""
    try:
        v = stat_fields(pid)
        return (int(v[13]) + int(v[14])) / TICK
    except (OSError, IndexError):
        return 0.0


def pg_cpu(postmaster):
    """The postmaster, the backends it reaped, its live children, by pid."""
    cpu = {postmaster: proc_cpu(postmaster)[0], "reaped": reaped(postmaster)}
    for d in os.listdir("/proc"):
        if d.isdigit():
            c, ppid = proc_cpu(int(d))
            if ppid == postmaster:
                cpu[int(d)] = c
    return cpu


def busy():
    """The machine's CPU: (busy, stolen by the hypervisor), seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4] - v[7]) / TICK, v[7] / TICK


def pgbench_lines(name, p, stdout, stderr, warmup, secs):
    """pgbench's -P 1 progress lines in the window as bench_load's lines; the rate."""
    prog = [(float(m[1]), float(m[2]), float(m[3])) for m in
            re.finditer(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms", stderr)]
    window = [x for x in prog if warmup < x[0] <= warmup + secs + 0.01]
    done = re.search(r"number of transactions actually processed: (\d+)", stdout)
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    done, failed = int(done[1]) if done else 0, int(failed[1]) if failed else 0
    aborted = len(re.findall(r"client \d+ aborted", stderr))
    if p.returncode != 0 or not window or aborted:
        sys.stderr.write(f"{name}: pgbench exited {p.returncode}:\n{stderr[-2000:]}")
    rate = sum(x[1] for x in window) / len(window) if window else 0
    lat = sum(x[2] for x in window) / len(window) if window else 0
    print(f"bench {name} rate={rate:.0f}/s p50_ms=- p99_ms=- lat_avg_ms={lat:.3f} errors={failed + aborted}")
    print(f"calls {name} total={done + failed} ok={done} failed={failed + aborted}")
    return rate


def main(argv):
    cut = argv.index("--")
    cmd, args = argv[cut + 1:], argv[1:cut]
    name, server, postmaster, warmup, secs = args[0], int(args[1]), int(args[2]), float(args[3]), float(args[4])
    opts = dict(zip(args[5::2], args[6::2]))
    label = opts.get("--label", "server")
    keeper = int(opts["--keeper"]) if "--keeper" in opts else None

    def sample():
        k = proc_cpu(keeper)[0] if keeper else 0.0
        return time.monotonic(), proc_cpu(server)[0], proc_cpu(p.pid)[0], k, pg_cpu(postmaster), busy()

    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(warmup + 0.05)
    t0, s0, l0, k0, g0, (b0, st0) = sample()
    time.sleep(secs - 0.1)
    t1, s1, l1, k1, g1, (b1, st1) = sample()
    stdout, stderr = p.communicate()
    if os.path.basename(cmd[0]) == "pgbench":
        rate = pgbench_lines(name, p, stdout, stderr, warmup, secs)
    else:
        sys.stdout.write(stdout)
        sys.stderr.write(stderr)
        m = re.search(r"rate=(\d+)", stdout)
        rate = float(m[1]) if m else 0
    w = t1 - t0
    calls = rate * w

    def us(c):
        return c / calls * 1e6 if calls else float("nan")

    # A child born in the window counts whole; one gone by its end, from the
    # postmaster's reaped time less what it had used at the start.
    pg = sum(g1.get(k, 0) - g0.get(k, 0) for k in set(g0) | set(g1))
    s, l, k = s1 - s0, l1 - l0, k1 - k0
    keeper_field = f"keeper_cores={k / w:.2f} " if keeper is not None else ""
    print(f"cpu {name} {label}_cores={s / w:.2f} pg_cores={pg / w:.2f} load_cores={l / w:.2f} "
          f"{keeper_field}others_cores={(b1 - b0 - s - l - k - pg) / w:.2f} steal_cores={(st1 - st0) / w:.2f} "
          f"{label}_us_per_call={us(s):.1f} pg_us_per_call={us(pg):.1f} load_us_per_call={us(l):.1f} "
          f"total_us_per_call={us(s + pg + l):.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env python3
"""Interleaved command benchmarks: every round runs each case once, in turn, so background
load hits every case alike. Prints median, min, p90 per case and each median's ratio to the
first (the floor).

  bench.py [--rounds N] [--warmup N] [--user NAME] [--env K=V]... [--prep NAME=CMD]...
           NAME=CMD [NAME=CMD...]

CMD is a shell-free command line (split like a shell would, with shlex). Run as root with
--user to measure as an unprivileged user. A --prep command runs, untimed, before every run of
the case NAME (to start each run from the same state, e.g. an empty store).
"""
import argparse
import os
import pwd
import shlex
import statistics
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--user")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--json", help="also write the samples here")
    ap.add_argument("--prep", action="append", default=[], metavar="NAME=CMD")
    ap.add_argument("cases", nargs="+", metavar="NAME=CMD")
    a = ap.parse_args()

    cases = []
    for c in a.cases:
        name, _, cmd = c.partition("=")
        cases.append((name, shlex.split(cmd)))
    prep = {}
    for p in a.prep:
        name, _, cmd = p.partition("=")
        prep[name] = shlex.split(cmd)
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    kw = {}
    if a.user:
        pw = pwd.getpwnam(a.user)
        kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])

    def once(argv, name=None):
        if name in prep:
            r = subprocess.run(prep[name], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, **kw)
            if r.returncode != 0:
                sys.exit(f"prep for {name} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
        t0 = time.perf_counter_ns()
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, **kw)
        t1 = time.perf_counter_ns()
        if r.returncode != 0:
            sys.exit(f"{argv[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
        return (t1 - t0) / 1e6

    for _ in range(a.warmup):
        for name, argv in cases:
            once(argv, name)
    samples = {name: [] for name, _ in cases}
    for _ in range(a.rounds):
        for name, argv in cases:
            samples[name].append(once(argv, name))

    base = statistics.median(samples[cases[0][0]])
    width = max(len(n) for n, _ in cases)
    print(f"{'case':<{width}}  {'median ms':>9}  {'min ms':>7}  {'p90 ms':>7}  {'x ' + cases[0][0]:>10}")
    for name, _ in cases:
        s = sorted(samples[name])
        med = statistics.median(s)
        p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
        print(f"{name:<{width}}  {med:9.2f}  {s[0]:7.2f}  {p90:7.2f}  {med / base:10.2f}")
    print(f"({a.rounds} interleaved rounds after {a.warmup} warm-up rounds)")
    if a.json:
        import json
        with open(a.json, "w") as f:
            json.dump(samples, f)


if __name__ == "__main__":
    main()

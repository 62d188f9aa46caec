#!/usr/bin/env python3
"""bench/report.py RAW.jsonl OUTDIR [README]: the tables of `make bench`.

Reads the measurements bench/run.sh wrote (one JSON object a line) and
writes OUTDIR/latest.json and OUTDIR/latest.md.  A cell is one (tool, mode,
n, cmd); its numbers are medians over the repetitions.  The ratios compare
a row with the best peer (pssh, pdsh, clush, ansible) of the same n and
command: speed = its hosts/s over the fastest peer's, CPU = its controller
CPU per host over the most frugal peer's (below 1 is better).  With
README, the targets and the main tables also go between its bench markers.
"""
import json
import os
import statistics
import sys

PEERS = ["pssh", "pdsh", "clush", "ansible"]
ORDER = [("omserver", "cold"), ("omserver", "warm"), ("pssh", "fresh"), ("pdsh", "fresh"),
         ("clush", "fresh"), ("ansible", "fresh")]
LABEL = {("omserver", "cold"): "omserver cold", ("omserver", "warm"): "omserver warm",
         ("ansible", "fresh"): "ansible (raw)"}
TARGETS = {"cold_hosts_per_s": 85, "cold_cpu_ms_per_host": 2.0, "warm_cmds_per_s": 600,
           "noop_p50_ms": 5.0, "scale_wall_s": 5.0, "scale_results_per_s": 2000,
           "flood_rss_growth_kb": 8 * 1024, "session_rss_kb": 128}


def label(tool, mode):
    return LABEL.get((tool, mode), tool)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def r3(x, nd=3):
    return None if x is None else round(x, nd)


def mib(b):
    return f"{b / 2**20:g} MiB" if b >= 2**20 else f"{b} bytes"


def gib(b):
    return f"{b / 2**30:.3g} GiB" if b >= 2**30 else mib(b)


def halves(series, wall):
    """Max RSS over the first and the second half of the run (series: [t_s, kb], start first)."""
    pts = series[1:] or series
    mid = wall / 2
    a = [kb for t, kb in pts if t <= mid] or [pts[0][1]]
    b = [kb for t, kb in pts if t > mid] or [pts[-1][1]]
    return {"master_rss_first_half_max_kb": max(a), "master_rss_second_half_max_kb": max(b),
            "master_rss_late_growth_kb": max(b) - max(a)}


def main():
    raw, out = sys.argv[1], sys.argv[2]
    lines = [json.loads(l) for l in open(raw) if l.strip()]
    meas = [l for l in lines if "tool" in l]
    meta = next((l for l in lines if l.get("kind") == "meta"), {})
    rss = [l for l in lines if l.get("kind") == "rss"]
    disp = next((l for l in lines if l.get("kind") == "dispatch"), None)
    sc = next((l for l in lines if l.get("kind") == "scale"), None)
    fl = next((l for l in lines if l.get("kind") == "flood"), None)

    cells = {}
    for m in meas:
        cells.setdefault((m["tool"], m["mode"], m["n"], m["cmd"]), []).append(m)

    rows = []
    for (tool, mode, n, cmd), ms in cells.items():
        wall = med([m["wall_s"] for m in ms])
        ctl = med([m["controller_cpu_s"] for m in ms])
        row = {
            "tool": tool, "mode": mode, "n": n, "cmd": cmd,
            "wall_s": r3(wall, 4),
            "hosts_per_s": r3(n / wall, 1),
            "controller_cpu_ms_per_host": r3(ctl * 1000 / n, 2),
            "runs": len(ms),
            "wall_s_runs": [m["wall_s"] for m in ms],
            "ok_min": min(m["ok"] for m in ms),
            "fanout": ms[0]["fanout"],
            "sshd_cpu_ms_per_host": r3(med([m["sshd_cpu_s"] for m in ms]) * 1000 / n, 2),
        }
        if tool == "omserver":
            row["master_cpu_ms_per_host"] = r3(med([m["master_cpu_s"] for m in ms]) * 1000 / n, 2)
            row["worker_cpu_ms_per_host"] = r3(med([m["worker_cpu_s"] for m in ms]) * 1000 / n, 2)
            row["omctl_cpu_ms_per_host"] = r3(med([m["client_cpu_s"] for m in ms]) * 1000 / n, 2)
            row["pg_cpu_ms_per_host"] = r3(med([m["pg_cpu_s"] for m in ms]) * 1000 / n, 2)
        rows.append(row)

    # ratios to the best peer of the same n and command
    for row in rows:
        peers = [r for r in rows if r["tool"] in PEERS and r["n"] == row["n"] and r["cmd"] == row["cmd"]]
        if not peers:
            continue
        fast = max(peers, key=lambda r: r["hosts_per_s"])
        frugal = min(peers, key=lambda r: r["controller_cpu_ms_per_host"])
        row["best_peer_speed"] = fast["tool"]
        row["speed_vs_best_peer"] = r3(row["hosts_per_s"] / fast["hosts_per_s"], 2)
        row["best_peer_cpu"] = frugal["tool"]
        if frugal["controller_cpu_ms_per_host"] > 0:
            row["cpu_vs_best_peer"] = r3(row["controller_cpu_ms_per_host"] / frugal["controller_cpu_ms_per_host"], 3)

    def key(r):
        o = ORDER.index((r["tool"], r["mode"])) if (r["tool"], r["mode"]) in ORDER else 99
        return (r["cmd"] != "true", r["n"], o)
    rows.sort(key=key)

    dispatch = None
    if disp:
        res = disp["result"]
        jobs_cpu = disp["jobs_cpu"]
        dispatch = {
            "tool": "omserver", "mode": "dispatch", "n": 1, "cmd": "noop module",
            "runs": res["jobs"],
            "wall_s": r3(res["wall_s"], 3),
            "jobs_per_s": res["jobs_per_s"],
            "hosts_per_s": res["jobs_per_s"],
            "controller_cpu_ms_per_host": r3((disp["master_cpu_s"] + disp["worker_cpu_s"]) * 1000 / jobs_cpu, 2),
            "latency_ms": res["total"], "submit_ms": res["submit"],
            "pg_cpu_ms_per_job": r3(disp["pg_cpu_s"] * 1000 / jobs_cpu, 2),
            "client_cpu_ms_per_job": res["client_cpu_ms_per_job"],
            "hosts_ok": res["hosts_ok"],
        }

    scale = None
    if sc:
        # submit -> every result stored: omctl run returns once the master says done
        scale = {
            "tool": "omserver-sim", "mode": "scale", "n": sc["n"],
            "cmd": f"uname -a (--sim {sc['sim']})",
            "wall_s": r3(sc["wall_s"], 3),
            "hosts_per_s": r3(sc["n"] / sc["wall_s"], 1),
            "controller_cpu_ms_per_host": r3((sc["master_cpu_s"] + sc["worker_cpu_s"]) * 1000 / sc["n"], 3),
            "runs": 1,
            "results_stored_per_s": r3(sc["stored_ok"] / sc["wall_s"], 1),
            "stored_ok": sc["stored_ok"], "ok": sc["ok"], "idcs": 2, "workers": 2,
            "output_bytes_stored": sc.get("output_bytes_stored"),
            "master_cpu_s": sc["master_cpu_s"], "worker_cpu_s": sc["worker_cpu_s"],
            "pg_cpu_s": sc["pg_cpu_s"], "omctl_cpu_s": sc["client_cpu_s"],
            "master_peak_rss_kb": sc["master_peak_rss_kb"],
            "worker_peak_rss_kb": sc["worker_peak_rss_kb"],
            "date": sc.get("date"), "command": sc.get("command"),
        }

    flood = None
    if fl and "skipped" not in fl:
        # 1 GiB of output through the real path; the master's RSS must stay flat
        mr = fl["master_rss_kb"]
        flood = {
            "tool": "omserver-sim", "mode": "flood", "n": fl["n"],
            "cmd": f"cat big (--sim {fl['sim']})",
            "wall_s": r3(fl["wall_s"], 3),
            "hosts_per_s": r3(fl["n"] / fl["wall_s"], 1) if fl["wall_s"] else None,
            "controller_cpu_ms_per_host": r3((fl["master_cpu_s"] + fl["worker_cpu_s"]) * 1000 / fl["n"], 3),
            "runs": 1, "rc": fl["rc"],
            "bytes_per_host": fl["bytes_per_host"], "total_bytes": fl["total_bytes"],
            "stored_ok": fl["stored_ok"], "output_bytes_stored": fl.get("output_bytes_stored"),
            "mb_per_s_stored": fl["mb_per_s"], "idcs": 1, "workers": 1,
            "master_rss_kb": mr, "master_rss_growth_kb": mr["max"] - mr["start"],
            # flat: no growth with the volume that went through, i.e. over time
            **halves(fl["master_rss_series"], fl["wall_s"]),
            "master_rss_series": fl["master_rss_series"],
            "master_peak_rss_kb": fl["master_peak_rss_kb"],
            "worker_rss_kb": fl["worker_rss_kb"], "worker_peak_rss_kb": fl["worker_peak_rss_kb"],
            "master_cpu_s": fl["master_cpu_s"], "worker_cpu_s": fl["worker_cpu_s"],
            "pg_cpu_s": fl["pg_cpu_s"], "omctl_cpu_s": fl["client_cpu_s"],
            "date": fl.get("date"), "command": fl.get("command"),
        }

    rss_rows = []
    for n in sorted({r["n"] for r in rss}):
        rs = [r for r in rss if r["n"] == n]
        per = med([(r["rss1_kb"] - r["rss0_kb"]) / n for r in rs])
        rss_rows.append({"n": n, "runs": len(rs), "rss0_kb": med([r["rss0_kb"] for r in rs]),
                         "rss1_kb": med([r["rss1_kb"] for r in rs]), "kb_per_session": r3(per, 1)})

    def find(tool, mode, n, cmd):
        return next((r for r in rows if (r["tool"], r["mode"], r["n"], r["cmd"]) == (tool, mode, n, cmd)), None)

    targets = []
    for cmd in ["true", "uname -a"]:
        c = find("omserver", "cold", 500, cmd)
        if c:
            targets.append({"target": f"cold N=500 `{cmd}` >= {TARGETS['cold_hosts_per_s']} hosts/s",
                            "measured": f"{c['hosts_per_s']} hosts/s",
                            "met": c["hosts_per_s"] >= TARGETS["cold_hosts_per_s"]})
            targets.append({"target": f"cold N=500 `{cmd}` controller CPU <= {TARGETS['cold_cpu_ms_per_host']} ms/host",
                            "measured": f"{c['controller_cpu_ms_per_host']} ms/host",
                            "met": c["controller_cpu_ms_per_host"] <= TARGETS["cold_cpu_ms_per_host"]})
        w = find("omserver", "warm", 500, cmd)
        if w:
            targets.append({"target": f"warm N=500 `{cmd}` >= {TARGETS['warm_cmds_per_s']} commands/s",
                            "measured": f"{w['hosts_per_s']} commands/s",
                            "met": w["hosts_per_s"] >= TARGETS["warm_cmds_per_s"]})
    for r in rss_rows:
        if r["n"] in (100, 500) and r["kb_per_session"] is not None:
            targets.append({"target": f"worker RSS per open SSH session at {r['n']} sessions "
                                      f"<= {TARGETS['session_rss_kb']} KB",
                            "measured": f"{r['kb_per_session']} kB",
                            "met": r["kb_per_session"] <= TARGETS["session_rss_kb"]})
    if dispatch:
        p50 = dispatch["latency_ms"]["p50_ms"]
        targets.append({"target": f"noop dispatch p50 <= {TARGETS['noop_p50_ms']} ms",
                        "measured": f"{p50:.2f} ms (p99 {dispatch['latency_ms']['p99_ms']:.2f} ms)",
                        "met": p50 <= TARGETS["noop_p50_ms"]})

    if scale:
        targets.append({"target": f"{scale['n']} simulated hosts in <= {TARGETS['scale_wall_s']} s",
                        "measured": f"{scale['wall_s']:.2f} s",
                        "met": scale["wall_s"] <= TARGETS["scale_wall_s"]})
        targets.append({"target": f">= {TARGETS['scale_results_per_s']} host-results/s into PostgreSQL",
                        "measured": f"{scale['results_stored_per_s']:.0f}/s",
                        "met": scale["results_stored_per_s"] >= TARGETS["scale_results_per_s"]})

    if flood:
        lim = TARGETS["flood_rss_growth_kb"]
        whole = flood["stored_ok"] == flood["n"] and flood["rc"] == 0
        late = flood["master_rss_late_growth_kb"]
        targets.append({"target": f"master RSS flat during {gib(flood['total_bytes'])} output flood "
                                  f"(max of the second half - max of the first half <= {lim // 1024} MiB)",
                        "measured": f"{late:+d} kB (first half max {flood['master_rss_first_half_max_kb']}, "
                                    f"second half max {flood['master_rss_second_half_max_kb']} kB; "
                                    f"idle {flood['master_rss_kb']['start']} kB)"
                                    + ("" if whole else f", only {flood['stored_ok']}/{flood['n']} hosts ok"),
                        "met": late <= lim and whole})
    elif fl:
        targets.append({"target": "master RSS flat during output flood", "measured": f"not run: {fl['skipped']}",
                        "met": False})

    doc = {"meta": meta, "rows": rows + ([dispatch] if dispatch else []) + ([scale] if scale else [])
           + ([flood] if flood else []),
           "worker_rss": rss_rows,
           "targets": targets}
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    md = []
    w = md.append
    w("# make bench: latest results\n")
    w(f"Produced by `{meta.get('command', 'make bench')}` (bench/run.sh) on {meta.get('date', '?')}, "
      f"{meta.get('cpus', '?')} CPUs ({meta.get('cpu_model', '?')}), kernel {meta.get('kernel', '?')}; "
      f"took {meta.get('elapsed_s', '?')} s. Every tool ran against the same loopback sshd fleet "
      f"(OpenSSH {meta.get('versions', {}).get('openssh-server', '?')}, 127.0.1.1-16, KEX curve25519-sha256), "
      f"fan-out {meta.get('fanout', '?')}, interleaved; each cell is the median of {meta.get('runs', '?')} runs"
      + (f" ({meta['skipped_reps']} repetitions skipped: time budget)" if meta.get("skipped_reps") else "") + ".\n")
    w("Controller CPU: omserver = om-master + om-worker (omctl and PostgreSQL listed apart); "
      "a peer = its whole process tree (every `ssh` it starts). "
      "Ratios: hosts/s over the fastest peer's, controller CPU over the most frugal peer's. "
      + ("CPU of master, worker, PostgreSQL and sshd from cgroup-v1 cpuacct groups; of the peers and omctl "
         "from wait4 rusage." if meta.get("cpu_from") == "cgroup" else
         "CPU from /proc in clock ticks (no cgroup could be made): coarse at N=10.") + "\n")
    if targets:
        w("## Targets (issue 7)\n")
        w("| target | measured | |")
        w("|---|---|---|")
        for t in targets:
            w(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**missed**'} |")
        w("")
    for cmd in ["true", "uname -a"]:
        ns = sorted({r["n"] for r in rows if r["cmd"] == cmd})
        if not ns:
            continue
        w(f"## `{cmd}` on N hosts\n")
        w("Cell: wall s · hosts/s (omserver: times the fastest peer's) · controller CPU ms/host.\n")
        w("| tool | " + " | ".join(f"N={n}" for n in ns) + " |")
        w("|---|" + "---|" * len(ns))
        for tm in ORDER:
            cs = [find(tm[0], tm[1], n, cmd) for n in ns]
            if not any(cs):
                continue
            txt = []
            for c in cs:
                if c is None:
                    txt.append("-")
                    continue
                bad = "" if c["ok_min"] == c["n"] else f" **{c['ok_min']}/{c['n']} ok**"
                ratio = ""
                if c["tool"] == "omserver" and c.get("speed_vs_best_peer") is not None:
                    ratio = f" ({c['speed_vs_best_peer']:.2f}x {c['best_peer_speed']})"
                txt.append(f"{c['wall_s']:.2f} · {c['hosts_per_s']:.0f}/s{ratio} · "
                           f"{c['controller_cpu_ms_per_host']:.2f}{bad}")
            w(f"| {label(*tm)} | " + " | ".join(txt) + " |")
        w("")
    w("## Every cell\n")
    w("| tool | N | cmd | runs | wall median s (min-max) | hosts/s | controller CPU ms/host | "
      "speed vs best peer | CPU vs best peer | sshd CPU ms/host | omserver: master / worker / omctl / PostgreSQL ms/host | ok |")
    w("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        ws = r["wall_s_runs"]
        extra = "-"
        if r["tool"] == "omserver":
            extra = (f"{r['master_cpu_ms_per_host']:.2f} / {r['worker_cpu_ms_per_host']:.2f} / "
                     f"{r['omctl_cpu_ms_per_host']:.2f} / {r['pg_cpu_ms_per_host']:.2f}")
        sp, cp = r.get("speed_vs_best_peer"), r.get("cpu_vs_best_peer")
        sps = "-" if sp is None else f"{sp:.2f}x ({r['best_peer_speed']})"
        cps = "-" if cp is None else f"{cp:.3f}x ({r['best_peer_cpu']})"
        w(f"| {label(r['tool'], r['mode'])} | {r['n']} | `{r['cmd']}` | {r['runs']} | "
          f"{r['wall_s']:.3f} ({min(ws):.3f}-{max(ws):.3f}) | {r['hosts_per_s']:.1f} | "
          f"{r['controller_cpu_ms_per_host']:.2f} | {sps} | {cps} | "
          f"{r['sshd_cpu_ms_per_host']:.2f} | {extra} | {r['ok_min']}/{r['n']} |")
    w("")
    if dispatch:
        lat, sub = dispatch["latency_ms"], dispatch["submit_ms"]
        w("## Dispatch latency (noop module, one host)\n")
        w(f"{dispatch['runs']} jobs one after the other from one client session "
          "(build/bench/om-bench-dispatch; 5 warm-up jobs not counted, the first opens the host's "
          "session, the rest take it from the pool). Latency: from just before SUBMIT to the FOLLOW answer "
          "that says the job is done.\n")
        w("| measure | p50 ms | p90 ms | p99 ms | min ms | max ms | mean ms |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for name, s in (("submit -> result (job done)", lat), ("submit -> SUBMITTED", sub)):
            w(f"| {name} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['min_ms']:.2f} | {s['max_ms']:.2f} | {s['mean_ms']:.2f} |")
        w("")
        w(f"{dispatch['jobs_per_s']} jobs/s sequential; per job: master + worker CPU "
          f"{dispatch['controller_cpu_ms_per_host']} ms, PostgreSQL {dispatch['pg_cpu_ms_per_job']} ms, "
          f"client {dispatch['client_cpu_ms_per_job']:.2f} ms; {dispatch['hosts_ok']}/{dispatch['runs']} ok.\n")
    if scale:
        w("## Scale simulation (sim connector)\n")
        w(f"One job (`shell` `uname -a`, forks {scale['n']}) on {scale['n']} simulated hosts, half in each of "
          f"two IDCs, one om-worker each started with `--sim {sc['sim']}` (no SSH: each command "
          "completes after the latency with that many bytes of output; from there the real path: "
          "outbox, reports, master, PostgreSQL). Wall: `omctl run` from submit until the master says the "
          f"job is done, i.e. every result stored. Run by `{scale['command']}` on {scale['date']}.\n")
        w("| N | wall s | host-results stored/s | ok stored | master CPU s | workers CPU s | "
          "controller CPU ms/host | PostgreSQL CPU s | omctl CPU s | master peak RSS kB | "
          "workers peak RSS kB |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        w(f"| {scale['n']} | {scale['wall_s']:.3f} | {scale['results_stored_per_s']:.0f} | "
          f"{scale['stored_ok']}/{scale['n']} | {scale['master_cpu_s']:.2f} | {scale['worker_cpu_s']:.2f} | "
          f"{scale['controller_cpu_ms_per_host']:.3f} | {scale['pg_cpu_s']:.2f} | {scale['omctl_cpu_s']:.2f} | "
          f"{scale['master_peak_rss_kb']} | {' / '.join(str(x) for x in scale['worker_peak_rss_kb'])} |")
        w("")
    if flood:
        mr, wr = flood["master_rss_kb"], flood["worker_rss_kb"]
        w("## Output flood (master memory)\n")
        w(f"One job (`shell` `cat big`, forks {flood['n']}) on {flood['n']} simulated hosts of one om-worker "
          f"started with `--sim {fl['sim']}`: each host prints {mib(flood['bytes_per_host'])}, "
          f"{gib(flood['total_bytes'])} in all, through the real path (worker outbox and spool, reports, "
          "master, PostgreSQL) and back to the `omctl run` that follows the job (its output to /dev/null). "
          f"VmRSS of the master and the worker sampled every 0.25 s ({mr['samples']} samples); start: before "
          "the submit, end: after omctl returned. "
          f"Run by `{flood['command']}` on {flood['date']}.\n")
        w("| N hosts | output per host | total | wall s | MB/s stored | stored ok | "
          "master RSS start / median / max / end kB | max - start kB | worker peak RSS kB | "
          "master CPU s | worker CPU s | PostgreSQL CPU s | omctl CPU s |")
        w("|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
        stored = f"{flood['stored_ok']}/{flood['n']}"
        if flood["output_bytes_stored"] is not None and flood["output_bytes_stored"] != flood["total_bytes"]:
            stored += f" ({flood['output_bytes_stored']} of {flood['total_bytes']} bytes)"
        if flood["rc"]:
            stored += f", omctl exit {flood['rc']}"
        w(f"| {flood['n']} | {mib(flood['bytes_per_host'])} | {gib(flood['total_bytes'])} | "
          f"{flood['wall_s']:.2f} | {flood['mb_per_s_stored']:.1f} | {stored} | "
          f"{mr['start']} / {mr['p50']} / {mr['max']} / {mr['end']} | {flood['master_rss_growth_kb']} | "
          f"{flood['worker_peak_rss_kb']} | {flood['master_cpu_s']:.2f} | {flood['worker_cpu_s']:.2f} | "
          f"{flood['pg_cpu_s']:.2f} | {flood['omctl_cpu_s']:.2f} |")
        w("")
        ser = flood["master_rss_series"]
        if len(ser) > 1:
            step = (ser[-1][0] - ser[1][0]) / (len(ser) - 2) if len(ser) > 2 else ser[1][0] - ser[0][0]
            w(f"master RSS kB at the start, then every ~{step:.2f} s (the max of each slice): "
              + ", ".join(str(kb) for _, kb in ser) + "\n")
    elif fl:
        w("## Output flood (master memory)\n")
        w(f"Not run: {fl['skipped']} (`{fl.get('command')}`, {fl.get('date')}).\n")
    if rss_rows:
        w("## Worker memory per pooled session\n")
        w("RSS of a fresh om-worker, and after the warm run with N sessions in its pool (median over runs).\n")
        w("| N sessions | RSS fresh kB | RSS with sessions kB | kB per session |")
        w("|---:|---:|---:|---:|")
        for r in rss_rows:
            w(f"| {r['n']} | {r['rss0_kb']:.0f} | {r['rss1_kb']:.0f} | {r['kb_per_session']} |")
        w("")
    v = meta.get("versions", {})
    if v:
        w("Versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x) + ".")
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    if len(sys.argv) > 3:
        readme(sys.argv[3], meta, md)


def readme(path, meta, md):
    """The targets and the two pivot tables, between the bench markers of path."""
    keep, on = [], False
    for line in md:
        if line.startswith("## "):
            on = line.startswith(("## Targets", "## `true`", "## `uname -a`", "## Scale"))
            if on:
                line = "#" + line  # a level below README's Performance
        if on:
            keep.append(line)
    d = next((l for l in md if l.startswith("| submit -> result")), None)
    head = (f"Latest run: `{meta.get('command', 'make bench')}`, {meta.get('date', '?')}, "
            f"{meta.get('elapsed_s', '?')} s; medians of {meta.get('runs', '?')} runs. "
            "All cells, ratios and the dispatch latency: `bench/results/latest.md`.\n")
    if d:
        cells = [c.strip() for c in d.strip("|").split("|")]
        head += f"\nnoop dispatch, submit -> result on one host: p50 {cells[1]} ms, p99 {cells[3]} ms.\n"
    text = open(path).read()
    b, e = "<!-- bench:begin (from bench/results/latest.md) -->", "<!-- bench:end -->"
    i, j = text.find(b), text.find(e)
    if i < 0 or j < i:
        print(f"report.py: no bench markers in {path}", file=sys.stderr)
        return
    text = text[:i + len(b)] + "\n" + head + "\n" + "\n".join(keep).rstrip() + "\n" + text[j:]
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""idca's performance figures: start-up time, issuance throughput and latency, server CPU
per issuance against the signature floor, memory after many issuances and over a
nonce-only run, and (with --long) a five-minute run at concurrency 64 that must make
progress every second.

Builds the release binaries, starts `idca serve` on a fresh data directory on disk
(validation always valid, writes durable as always), drives it with `idca-load`, and
prints medians of several runs. The machine is shared and noisy: read the medians and
the ratios, not single runs.

    python3 scripts/bench.py            # about two minutes
    python3 scripts/bench.py --runs 5   # more runs per figure
    python3 scripts/bench.py --long     # adds the five-minute stall check
    python3 scripts/bench.py --ab OLD NEW  # two idca binaries, alternated runs at c=32
    python3 scripts/bench.py --ab OLD NEW --concurrency 1  # ... one flow at a time
    python3 scripts/bench.py --stores --concurrency 8  # sled against PostgreSQL, alternated
    python3 scripts/bench.py --instances --concurrency 32  # 1, 2, 3 instances behind HAProxy
    python3 scripts/bench.py --pebble --concurrency 32 --pin 0  # idca against Debian's pebble,
                                        # alternated, each server pinned to CPU 0 (load on the rest)
    python3 scripts/bench.py --large DIR --pin 0  # a store filled by idca-fill against an empty
                                        # one, alternated; start-up, CRL and RSS on the large one
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDCA = os.path.join(ROOT, "target", "release", "idca")
LOAD = os.path.join(ROOT, "target", "release", "idca-load")
PORT = 14100
# The per-address and per-user limits a load from one address and one user would reach.
UNLIMITED = "".join(f"{k} = 0\n" for k in (
    "new_accounts_per_minute_per_address", "login_pages_per_minute_per_address",
    "device_registrations_per_minute_per_user", "backend_nonces_per_minute_per_user"))


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "--bins"], cwd=ROOT, check=True)


def wait_served(url, ctx, what, started, pause):
    """Seconds from `started` until `url` answered (polled every `pause` s, 20 s at most)."""
    while time.monotonic() < started + 20:
        try:
            urllib.request.urlopen(url, context=ctx, timeout=1).read()
            return time.monotonic() - started
        except Exception:
            time.sleep(pause)
    raise SystemExit(f"{what} did not start")


class Stoppable:
    """A server process stopped with SIGTERM."""

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
            self.proc = None


def pinned(command, pin):
    """`command` run on CPU `pin` only (taskset execs it: the pid stays the server's)."""
    return ["taskset", "-c", str(pin), *command] if pin is not None else command


class Server(Stoppable):
    def __init__(self, data, binary=IDCA, database=None, pin=None, quota=None, config_dir=None):
        self.binary = binary
        self.pin = pin
        self.data = data
        self.config = os.path.join(config_dir or os.path.dirname(data), "bench.toml")
        storage = "[storage]\n" if database or quota is not None else ""
        storage += f'url = "{database}"\n' if database else ""
        storage += f"quota_bytes = {quota}\n" if quota is not None else ""
        with open(self.config, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{PORT}"\n[management]\nlisten = ""\n'
                    f'[acme.testing]\nalways_valid = true\n[limits]\n{UNLIMITED}'
                    f'[log]\nfilter = "warn"\n{storage}')
        self.proc = None

    def start(self):
        """Starts the server; returns seconds until the directory answered."""
        started = time.monotonic()
        self.proc = subprocess.Popen(
            pinned([self.binary, "--config", self.config, "--data", self.data, "serve"], self.pin),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return wait_served(f"https://localhost:{PORT}/directory", ctx, "idca", started, 0.002)


def load(server, concurrency, orders, mode="issue", duration=120, directory=None, ca=None, pin=None):
    """idca-load against `server`; with `pin` (the server's CPU), on the other CPUs."""
    others = None
    if pin is not None:
        others = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)) if c != pin)
    out = subprocess.run(
        (["taskset", "-c", others] if others else []) + [LOAD, "--directory", directory or f"https://localhost:{PORT}/directory", "--ca",
         ca or os.path.join(server.data, "root.pem"), "-c", str(concurrency), "-n", str(orders),
         "--duration", str(duration), "--mode", mode, "--server-pid", str(server.proc.pid), "--json"],
        capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"idca-load failed: {out.stderr}{out.stdout}")
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def compare(binaries, runs, tmp, concurrency=32, pin=None):
    """Alternates the binaries on fresh data and prints the medians of each (with `pin`,
    each server on that CPU and the load on the others)."""
    results = {b: [] for b in binaries}
    for _ in range(runs):
        for b in binaries:
            data = os.path.join(tmp, "data")
            shutil.rmtree(data, ignore_errors=True)
            server = Server(data, b, pin=pin)
            try:
                server.start()
                load(server, 8, 200, pin=pin)  # warm-up
                orders = 4000 if concurrency >= 8 else 500 * concurrency
                results[b].append(load(server, concurrency, orders, pin=pin)[0])
            finally:
                server.stop()
    for b, rs in results.items():
        rate = median([r["per_second"] for r in rs])
        cpu = median([r["server"]["cpu_ms_per_op"] for r in rs])
        ratio = median([r["server"]["cpu_ms_per_op"] / r["floor_ms"] for r in rs])
        p50 = median([r["flow_ms"]["p50"] for r in rs])
        print(f"{b}: c={concurrency} {rate:.0f} issuances/s, flow p50 {p50:.2f} ms, {cpu:.2f} ms CPU each "
              f"= {ratio:.1f}x the floor (runs: {', '.join('%.0f' % r['per_second'] for r in rs)})")


class Pebble(Stoppable):
    """Debian's `pebble` (apt-get install pebble) on a TLS certificate from idca's own
    local PKI, always valid and without its artificial sleeps: Pebble's fastest mode."""

    def __init__(self, tmp, pin=None):
        self.dir = os.path.join(tmp, "pebble")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        ca = os.path.join(self.dir, "ca")
        for args in (["init"], ["issue", "localhost"]):
            subprocess.run([IDCA, "--data", ca, *args], cwd=self.dir, check=True, capture_output=True)
        self.root = os.path.join(ca, "root.pem")
        self.config = os.path.join(self.dir, "pebble-config.json")
        with open(self.config, "w") as f:
            json.dump({"pebble": {"listenAddress": f"127.0.0.1:{PORT}", "managementListenAddress": "",
                                  "certificate": os.path.join(self.dir, "localhost.pem"),
                                  "privateKey": os.path.join(self.dir, "localhost-key.pem"),
                                  "httpPort": 5002, "tlsPort": 5001}}, f)
        self.pin = pin
        self.proc = None
        self.data = ca  # where load() finds the root

    def start(self):
        env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="1", PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        self.proc = subprocess.Popen(pinned(["pebble", "-config", self.config], self.pin), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctx = ssl.create_default_context(cafile=self.root)
        wait_served(f"https://localhost:{PORT}/dir", ctx, "pebble", time.monotonic(), 0.05)


def compare_pebble(runs, tmp, concurrency, pin, orders=1000):
    """idca (fresh data each run) and Pebble alternated, the same load, each server on CPU
    `pin` when given; prints each one's medians and the ratio."""
    if shutil.which("pebble") is None:
        raise SystemExit("pebble is not installed: apt-get install pebble")
    results = {"idca": [], "pebble": []}
    for _ in range(runs):
        data = os.path.join(tmp, "data")
        shutil.rmtree(data, ignore_errors=True)
        servers = [("idca", Server(data, pin=pin), None, None),
                   ("pebble", Pebble(tmp, pin), f"https://localhost:{PORT}/dir", None)]
        for name, server, directory, _ in servers:
            try:
                server.start()
                ca = server.root if name == "pebble" else None
                load(server, 8, 20, directory=directory, ca=ca, pin=pin)  # warm-up
                r = load(server, concurrency, orders, directory=directory, ca=ca, pin=pin, duration=300)[0]
                results[name].append(r)
            finally:
                server.stop()
    for name, rs in results.items():
        floor = median([r["floor_ms"] for r in rs])
        cpu = median([r["server"]["cpu_ms_per_op"] for r in rs])
        errors = sum(sum(r["errors"].values()) for r in rs)
        print(f"{name}: {rates(rs, concurrency, pin)} ({cpu / floor:.1f}x the {floor:.2f} ms floor), {errors} errors")
    print_ratios("idca / pebble", results["pebble"], results["idca"])


def rates(rs, concurrency, pin):
    """The medians of idca-load results `rs`: issuances/s, each run's, and server CPU."""
    where = f"server pinned to CPU {pin}" if pin is not None else "unpinned"
    rate = median([r["per_second"] for r in rs])
    cpu = median([r["server"]["cpu_ms_per_op"] for r in rs])
    return (f"c={concurrency}, {where}: {rate:.0f} issuances/s (runs: "
            f"{', '.join('%.0f' % r['per_second'] for r in rs)}), {cpu:.2f} ms server CPU each")


def print_ratios(label, base, other):
    """Run-by-run ratios of issuances/s, `other` over `base`, and their median."""
    ratios = [o["per_second"] / b["per_second"] for b, o in zip(base, other)]
    print(f"{label} issuances/s, run by run: {', '.join('%.2f' % r for r in ratios)}; median {median(ratios):.2f}")


def timed_get(url, root):
    """Seconds to GET `url` in full (TLS, trusting `root`), and the body's length."""
    ctx = ssl.create_default_context(cafile=root)
    started = time.monotonic()
    body = urllib.request.urlopen(url, context=ctx, timeout=60).read()
    return time.monotonic() - started, len(body)


def compare_large(large, runs, tmp, concurrency, pin, orders=4000):
    """The same load on a fresh store and on `large` (filled by idca-fill, reused: each
    run adds its issuances), alternated; on the large one also the start-up to a served
    directory, the CRL's first (built) and second (kept) download, the time to stop
    (a clean close fingerprints the files) and the server's peak RSS."""
    results = {"empty": [], "large": []}
    extra = {"startup": [], "crl_built": [], "crl_kept": [], "stop": []}
    started_rss = []
    crl_bytes = 0
    for _ in range(runs):
        for name in ("empty", "large"):
            if name == "empty":
                data = os.path.join(tmp, "data")
                shutil.rmtree(data, ignore_errors=True)
            else:
                data = large
            server = Server(data, pin=pin, quota=0, config_dir=tmp)
            try:
                startup = server.start()
                if name == "large":
                    extra["startup"].append(startup)
                    time.sleep(0.5)  # the start's last step returns memory after the listener is up
                    started_rss.append(rss_mib(server.proc.pid))
                    root = os.path.join(data, "root.pem")
                    built, crl_bytes = timed_get(f"https://localhost:{PORT}/crl", root)
                    kept, _ = timed_get(f"https://localhost:{PORT}/crl", root)
                    extra["crl_built"].append(built)
                    extra["crl_kept"].append(kept)
                load(server, 8, 200, pin=pin)  # warm-up
                results[name].append(load(server, concurrency, orders, pin=pin, duration=300)[0])
            finally:
                stopping = time.monotonic()
                server.stop()
                if name == "large":
                    extra["stop"].append(time.monotonic() - stopping)
    for name, rs in results.items():
        peak = median([r["server"]["peak_rss_mib"] for r in rs])
        after = median([r["server"]["rss_mib"] for r in rs])
        print(f"{name}: {rates(rs, concurrency, pin)}, RSS after the load {after:.1f} MiB, peak {peak:.1f} MiB "
              "(start-up included)")
    print_ratios("large / empty", results["empty"], results["large"])
    ms = {k: median(v) * 1000 for k, v in extra.items()}
    print(f"large store: start-up to a served directory {ms['startup']:.0f} ms, CRL ({crl_bytes} bytes) "
          f"{ms['crl_built']:.1f} ms built, {ms['crl_kept']:.1f} ms kept, stop {ms['stop']:.0f} ms "
          f"(medians of {runs}); RSS once started {median(started_rss):.1f} MiB")


def rss_mib(pid):
    """Resident memory of `pid` now, MiB."""
    with open(f"/proc/{pid}/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib / 1024


def proc_cpu(pid, children=True):
    """CPU seconds of `pid` (with its reaped children when `children`)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    user, system, cuser, csystem = (int(x) for x in fields[11:15])
    return (user + system + (cuser + csystem if children else 0)) / ticks


class Postgres:
    """A throw-away cluster (scripts/pg) and the CPU its processes use."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        self.words = subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg"), "start", self.dir],
                                    capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self.n = 0

    def fresh_database(self):
        self.n += 1
        name = f"bench{self.n}"
        subprocess.run(["psql", self.words, "-qc", f"CREATE DATABASE {name}"], check=True)
        return f"{self.words} dbname={name}"

    def cpu_seconds(self):
        """The postmaster, the backends it reaped, and those still running."""
        total = proc_cpu(self.pid)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    if ppid == self.pid:
                        total += proc_cpu(int(entry), children=False)
                except (OSError, ValueError, IndexError):
                    pass
        return total

    def stop(self):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg"), "stop", self.dir], check=False)


def compare_stores(runs, tmp, concurrency):
    """The same issuance load on sled and on PostgreSQL, alternated, fresh state each run."""
    pg = Postgres(tmp)
    results = {"sled": [], "postgres": []}
    try:
        for _ in range(runs):
            for store in results:
                data = os.path.join(tmp, "data")
                shutil.rmtree(data, ignore_errors=True)
                server = Server(data, database=pg.fresh_database() if store == "postgres" else None)
                try:
                    server.start()
                    load(server, 8, 200)  # warm-up
                    before = pg.cpu_seconds()
                    r = load(server, concurrency, 4000 if concurrency >= 8 else 500 * concurrency)[0]
                    r["pg_ms_per_op"] = (pg.cpu_seconds() - before) * 1000 / max(r["completed"], 1)
                    results[store].append(r)
                finally:
                    server.stop()
    finally:
        pg.stop()
    rates = {}
    for store, rs in results.items():
        rates[store] = median([r["per_second"] for r in rs])
        print(f"{store}: c={concurrency} {rates[store]:.0f} issuances/s "
              f"(runs: {', '.join('%.0f' % r['per_second'] for r in rs)}), "
              f"p99 {median([r['flow_ms']['p99'] for r in rs]):.1f} ms, "
              f"idca CPU {median([r['server']['cpu_ms_per_op'] for r in rs]):.2f} ms/issuance, "
              f"PostgreSQL CPU {median([r['pg_ms_per_op'] for r in rs]):.2f} ms/issuance, "
              f"errors {sum(sum(r['errors'].values()) for r in rs)}")
    print(f"postgres / sled: {rates['postgres'] / rates['sled']:.2f}")


def balancer_tls(tmp):
    """A CA and a certificate for localhost (openssl), for HAProxy's TLS."""
    ca_key, ca, key, csr, crt = (os.path.join(tmp, f) for f in ("ca.key", "ca.pem", "lb.key", "lb.csr", "lb.crt"))
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=bench balancer CA", "-keyout", ca_key, "-out", ca)
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", key, "-out", csr)
    ext = os.path.join(tmp, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", crt)
    pem = os.path.join(tmp, "lb.pem")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return ca, pem


class Instance:
    """One `idca serve` behind the balancer: plain HTTP, the balancer's public URL."""

    def __init__(self, tmp, i, database):
        self.port = PORT + 1 + i
        self.data = os.path.join(tmp, f"data{i}")
        self.config = os.path.join(tmp, f"idca{i}.toml")
        with open(self.config, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{self.port}"\npublic_url = "https://localhost:{PORT}"\n'
                    f'tls = false\ntrusted_proxies = ["127.0.0.1/32"]\n[management]\nlisten = ""\n'
                    f'[storage]\nurl = "{database}"\n[acme.testing]\nalways_valid = true\n'
                    f'[limits]\nnew_accounts_per_minute_per_address = 0\n[log]\nfilter = "warn"\n')
        self.proc = subprocess.Popen([IDCA, "--config", self.config, "--data", self.data, "serve"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
                return
            except Exception:
                time.sleep(0.01)
        raise SystemExit("an idca instance did not start")

    def requests(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith("idca_http_requests_total{") and "/metrics" not in l and "/healthz" not in l)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


def haproxy(tmp, pem, ports):
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("global\n  maxconn 4000\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 2s\n"
                "  timeout client 60s\n  timeout server 60s\n  option forwardfor\n  retries 2\n"
                f"frontend acme\n  bind 127.0.0.1:{PORT} ssl crt {pem}\n  default_backend idca\n"
                "backend idca\n  balance roundrobin\n  option httpchk GET /healthz\n"
                "  default-server inter 1s fall 2 rise 1\n")
        for i, p in enumerate(ports):
            f.write(f"  server idca{i} 127.0.0.1:{p} check\n")
    binary = "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else "haproxy"
    proc = subprocess.Popen([binary, "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def pg_counters(pg, database):
    """(transactions, WAL syncs) of `database` / the cluster, once the statistics are in."""
    time.sleep(1.2)
    name = database.rsplit("dbname=", 1)[1]
    out = subprocess.run(["psql", pg.words, "-Atc",
                          f"SELECT xact_commit + xact_rollback, (SELECT wal_sync FROM pg_stat_wal) "
                          f"FROM pg_stat_database WHERE datname = '{name}'"],
                         capture_output=True, text=True, check=True).stdout.strip()
    xacts, syncs = out.split("|")
    return int(xacts), int(syncs)


def commits_per_second(pg):
    """PostgreSQL's durable commits per second here: pgbench, 32 clients, one-row inserts."""
    database = pg.fresh_database()
    subprocess.run(["psql", database, "-qc", "CREATE TABLE t (v int)"], check=True)
    script = os.path.join(pg.dir, "insert.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO t VALUES (1);\n")
    binary = [d for d in sorted(os.listdir("/usr/lib/postgresql"))][-1]
    out = subprocess.run([f"/usr/lib/postgresql/{binary}/bin/pgbench", "-n", "-c", "32", "-j", "2", "-T", "10",
                          "-f", script, database], capture_output=True, text=True, check=True).stdout
    return float([l for l in out.splitlines() if l.startswith("tps")][0].split()[2])


def compare_instances(runs, tmp, concurrency, counts=(1, 2, 3)):
    """Issuance through HAProxy to 1, 2 and 3 instances on one PostgreSQL database,
    alternated, a fresh database each run."""
    pg = Postgres(tmp)
    ca, pem = balancer_tls(tmp)
    results = {n: [] for n in counts}
    try:
        for _ in range(runs):
            for n in counts:
                database = pg.fresh_database()
                instances, lb = [], None
                try:
                    instances = [Instance(tmp, i, database) for i in range(n)]
                    lb = haproxy(tmp, pem, [i.port for i in instances])
                    directory = f"https://localhost:{PORT}/directory"
                    load(instances[0], 8, 200, directory=directory, ca=ca)  # warm-up
                    cpu0 = [proc_cpu(i.proc.pid) for i in instances]
                    lb0, pg0, req0 = proc_cpu(lb.pid), pg.cpu_seconds(), sum(i.requests() for i in instances)
                    x0, s0 = pg_counters(pg, database)
                    r = load(instances[0], concurrency, 4000, directory=directory, ca=ca)[0]
                    done = max(r["completed"], 1)
                    x1, s1 = pg_counters(pg, database)
                    r["idca_ms"] = sum(proc_cpu(i.proc.pid) - c for i, c in zip(instances, cpu0)) * 1000 / done
                    r["lb_ms"] = (proc_cpu(lb.pid) - lb0) * 1000 / done
                    r["pg_ms"] = (pg.cpu_seconds() - pg0) * 1000 / done
                    r["requests"] = (sum(i.requests() for i in instances) - req0) / done
                    r["xacts"] = (x1 - x0) / done
                    r["syncs"] = (s1 - s0) / done
                    results[n].append(r)
                finally:
                    if lb:
                        lb.terminate()
                        lb.wait()
                    for i in instances:
                        i.stop()
                    for i in range(n):
                        shutil.rmtree(os.path.join(tmp, f"data{i}"), ignore_errors=True)
        bound = commits_per_second(pg)
    finally:
        pg.stop()
    print(f"| instances | issuances/s (c={concurrency}) | idca CPU / issuance | HAProxy CPU | PostgreSQL CPU | "
          "requests / issuance | database transactions / issuance | WAL syncs / issuance | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, rs in results.items():
        m = lambda k: median([r[k] for r in rs])
        print(f"| {n} | {m('per_second'):.0f} ({', '.join('%.0f' % r['per_second'] for r in rs)}) | "
              f"{m('idca_ms'):.2f} ms | {m('lb_ms'):.2f} ms | {m('pg_ms'):.2f} ms | {m('requests'):.1f} | "
              f"{m('xacts'):.1f} | {m('syncs'):.2f} | {sum(sum(r['errors'].values()) for r in rs)} |")
    print(f"PostgreSQL here: {bound:.0f} durable commits/s (pgbench, 32 clients, one-row inserts)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--ab", nargs=2, metavar=("OLD", "NEW"), help="compare two idca binaries")
    ap.add_argument("--concurrency", type=int, default=32, help="workers for --ab and --stores")
    ap.add_argument("--stores", action="store_true", help="compare sled and PostgreSQL")
    ap.add_argument("--instances", action="store_true", help="1, 2 and 3 instances behind HAProxy on PostgreSQL")
    ap.add_argument("--pebble", action="store_true", help="idca against Debian's pebble, alternated")
    ap.add_argument("--pin", type=int, help="with --pebble or --ab: run each server on this CPU only")
    ap.add_argument("--orders", type=int, default=1000, help="issuances per --pebble run")
    ap.add_argument("--large", metavar="DIR", help="a store filled by idca-fill against an empty one")
    args = ap.parse_args()
    modes = [
        (args.large, False, lambda tmp: compare_large(os.path.abspath(args.large), args.runs, tmp, args.concurrency,
                                                       args.pin)),
        (args.pebble, False, lambda tmp: compare_pebble(args.runs, tmp, args.concurrency, args.pin, args.orders)),
        (args.instances, True, lambda tmp: compare_instances(args.runs, tmp, args.concurrency)),
        (args.stores, True, lambda tmp: compare_stores(args.runs, tmp, args.concurrency)),
    ]
    for chosen, shared, run in modes:
        if chosen:
            if not args.no_build:
                build()
            tmp = tempfile.mkdtemp(prefix="idca-bench-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
            if shared:  # readable by PostgreSQL's and HAProxy's users
                os.chmod(tmp, 0o755)
            try:
                run(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return 0
    if args.ab:
        tmp = tempfile.mkdtemp(prefix="idca-bench-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
        try:
            compare(args.ab, args.runs, tmp, args.concurrency, args.pin)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    if not args.no_build:
        build()
    tmp = tempfile.mkdtemp(prefix="idca-bench-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    data = os.path.join(tmp, "data")
    server = Server(data)
    rows = []
    try:
        server.start()  # creates the CA
        server.stop()
        startups = []
        for _ in range(max(args.runs, 5)):
            startups.append(server.start())
            server.stop()
        rows.append(("start-up to a served directory (existing data)", f"{median(startups) * 1000:.0f} ms",
                     "< 200 ms"))
        server.start()
        load(server, 8, 200)  # warm-up
        for concurrency, orders, target in [(8, 2000, "p99 < 50 ms"), (32, 4000, ">= 800/s")]:
            results = [load(server, concurrency, orders)[0] for _ in range(args.runs)]
            rate = median([r["per_second"] for r in results])
            p50 = median([r["flow_ms"]["p50"] for r in results])
            p99 = median([r["flow_ms"]["p99"] for r in results])
            cpu = median([r["server"]["cpu_ms_per_op"] for r in results])
            floor = median([r["floor_ms"] for r in results])
            ratio = median([r["server"]["cpu_ms_per_op"] / r["floor_ms"] for r in results])
            errors = sum(sum(r["errors"].values()) for r in results)
            rows.append((f"concurrency {concurrency}: issuances/s", f"{rate:.0f}", target if concurrency == 32 else ""))
            rows.append((f"concurrency {concurrency}: flow p50 / p99", f"{p50:.1f} / {p99:.1f} ms",
                         target if concurrency == 8 else ""))
            rows.append((f"concurrency {concurrency}: server CPU per issuance", f"{cpu:.2f} ms = {ratio:.1f}x the "
                         f"floor ({floor:.2f} ms)", "<= 1.5x"))
            rows.append((f"concurrency {concurrency}: errors", str(errors), "0"))
        server.stop()
        # Memory: a fresh server, 10,000 issuances.
        shutil.rmtree(data)
        server.start()
        r, _ = load(server, 32, 10000, duration=300)
        rows.append(("peak RSS after 10,000 issuances", f"{r['server']['peak_rss_mib']:.1f} MiB", "< 64 MiB"))
        # Nonce-only: RSS before and after 100,000 nonces.
        r1, _ = load(server, 16, 20000, mode="nonce")
        r2, _ = load(server, 16, 100000, mode="nonce", duration=300)
        rows.append(("RSS over 100,000 nonces (before -> after)",
                     f"{r1['server']['rss_mib']:.1f} -> {r2['server']['rss_mib']:.1f} MiB", "flat"))
        rows.append(("newNonce/s (concurrency 16)", f"{r2['per_second']:.0f}", ""))
        # Client identity enrollments (idca enroll's flow: two logins with argon2, DPoP,
        # wire-dpop-01, wire-oidc-01), the demo user.
        ids = [load(server, 4, 200, mode="identity")[0] for _ in range(args.runs)]
        rows.append(("identity enrollments/s (concurrency 4)", f"{median([r['per_second'] for r in ids]):.0f}", ""))
        rows.append(("identity: server CPU per enrollment",
                     f"{median([r['server']['cpu_ms_per_op'] for r in ids]):.1f} ms", ""))
        rows.append(("identity: flow p50 / p99", f"{median([r['flow_ms']['p50'] for r in ids]):.0f} / "
                     f"{median([r['flow_ms']['p99'] for r in ids]):.0f} ms", ""))
        rows.append(("peak RSS after the identity runs", f"{ids[-1]['server']['peak_rss_mib']:.1f} MiB", "< 64 MiB"))
        if args.long:
            r, text = load(server, 64, 10_000_000, duration=300)
            rows.append(("5 min at concurrency 64: seconds without a completion",
                         str(r["seconds_without_completion"]), "0"))
            rows.append(("5 min at concurrency 64: issuances/s", f"{r['per_second']:.0f}", ""))
        server.stop()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'figure'.ljust(width)}  {'median of ' + str(args.runs) + ' runs':<40}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:<40}  {target}")


if __name__ == "__main__":
    sys.exit(main())

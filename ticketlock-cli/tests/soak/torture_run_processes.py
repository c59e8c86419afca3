#!/usr/bin/env python3
"""Issue 9's measurement with `ticketlock run` processes (a manual soak run,
not part of `cargo test`).

P processes each run `ticketlock run` R times, one after the other, on K
conversations (process i on conversation i % K), 20 ms sections, lifetime
3 s, socket timeout 1 s, against a private redis-server on a free loopback
port, while every client connection is killed every 0.2-0.3 s (CLIENT KILL
TYPE normal). The section is `flock -n` on a file per conversation, so an
overlap fails the section (exit 1). Prints sections done on the first try,
exit codes, overlaps, and the longest gap between two entries of one
conversation (a stall: its processes run back to back).

    cargo build -p ticketlock-cli
    python3 ticketlock-cli/tests/soak/torture_run_processes.py [--processes 6] [--runs 40] [--no-faults]
"""
import argparse, collections, os, random, shutil, socket, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--processes", type=int, default=6)
ap.add_argument("--runs", type=int, default=40)
ap.add_argument("--conversations", type=int, default=3)
ap.add_argument("--no-faults", action="store_true")
ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "../../../target/debug/ticketlock"))
a = ap.parse_args()

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

work = tempfile.mkdtemp(prefix="tl-soak-")
port = free_port()
redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
for _ in range(100):
    if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout.strip() == b"PONG":
        break
    time.sleep(0.05)
url = f"redis://127.0.0.1:{port}/0?socket_timeout=1"
stop = threading.Event()
kills = 0
def killer():
    global kills
    while not stop.is_set():
        time.sleep(random.uniform(0.2, 0.3))
        subprocess.run(["redis-cli", "-p", str(port), "CLIENT", "KILL", "TYPE", "normal"], capture_output=True)
        kills += 1
if not a.no_faults:
    threading.Thread(target=killer, daemon=True).start()

entries = collections.defaultdict(list)  # conversation -> entry times
codes = collections.Counter()
errors = collections.Counter()
lock = threading.Lock()
def proc(i):
    conv = i % a.conversations
    witness = os.path.join(work, f"w{conv}")
    stamp = os.path.join(work, f"s{i}")
    for r in range(a.runs):
        body = f"flock -n {witness} sh -c 'date +%s.%N >> {stamp}; sleep 0.02'"
        p = subprocess.run([a.bin, "run", "--redis", url, "--lifetime", "3", f"soak-{conv}", "--", "sh", "-c", body],
                           capture_output=True, text=True)
        with lock:
            codes[p.returncode] += 1
            if p.returncode != 0:
                errors[(p.returncode, p.stderr.strip()[:160])] += 1
threads = [threading.Thread(target=proc, args=(i,)) for i in range(a.processes)]
t0 = time.time()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.time() - t0
stop.set()
for i in range(a.processes):
    path = os.path.join(work, f"s{i}")
    if os.path.exists(path):
        entries[i % a.conversations] += [float(x) for x in open(path)]
gaps = []
for conv, ts in entries.items():
    ts.sort()
    gaps += [b - x for x, b in zip(ts, ts[1:])]
total = a.processes * a.runs
print(f"{total} runs in {elapsed:.1f} s, {kills} CLIENT KILLs")
print(f"sections done on the first try: {codes[0]}/{total} ({100.0 * codes[0] / total:.1f}%)")
print(f"exit codes: {dict(codes)}  (1: the section found the witness taken, an overlap)")
print(f"longest gap between two entries of a conversation: {max(gaps) * 1000:.0f} ms" if gaps else "no entries")
for (code, err), n in errors.most_common(5):
    print(f"  {n} x exit {code}: {err}")
redis.terminate(); redis.wait()
shutil.rmtree(work, ignore_errors=True)
sys.exit(0 if codes[1] == 0 else 1)

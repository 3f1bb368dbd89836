#!/usr/bin/env python3
"""Spawn -> listening time of secrets-sidecar (standalone mode, no prefetch).

Usage: bench/spawn_to_listen.py BINARY [ROUNDS]
Starts the binary ROUNDS times and measures, from just before exec, the time until
a TCP connect to its port succeeds. Prints the median and the spread.
"""
import os, socket, statistics, subprocess, sys, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def once(binary):
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "SECRETS_SIDECAR_TOKEN": "t", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "none",
           "HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    start = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 5:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                return (time.perf_counter() - start) * 1000
            except OSError:
                time.sleep(0.0001)
        raise SystemExit("not listening within 5 s")
    finally:
        p.terminate(); p.wait(5)

def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    times = sorted(once(binary) for _ in range(rounds))
    print(f"spawn -> listening over {rounds} rounds: median {statistics.median(times):.2f} ms, "
          f"min {times[0]:.2f} ms, max {times[-1]:.2f} ms")

if __name__ == "__main__":
    main()

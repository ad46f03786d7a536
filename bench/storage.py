"""Model download from an S3 server on loopback: Wharf vs bare parallel boto3 vs KServe's code.

    uv run python bench/storage.py                 # 1 GiB in 8 files + 200 small files
    uv run python bench/storage.py --size 256MiB   # a quick run

moto's S3 server runs in its own process on 127.0.0.1 and holds the objects. Three downloaders
fetch the same objects, one after the other, in each round (the order rotates between rounds):

- bare boto3: list the prefix, then `download_file` per object in a ThreadPoolExecutor
  (`--workers` threads), boto3's default TransferConfig (8 MiB parts, 10 in flight per object):
  the reference for the percentages;
- bare boto3 16 MiB: the same with Wharf's part size and parts in flight (16 MiB, 8), to show
  how much of the difference is the part size (moto copies the whole object for every ranged
  GET, so fewer, larger parts are cheaper for it);
- Wharf: `wharf_storage.download(uri, dest)` with its defaults;
- KServe: `kserve_storage.Storage.download(uri, dest)` from PyPI `kserve-storage`, in its own
  virtual environment under ~/.cache/wharf/bench/kserve-storage-venv (created with uv); its time
  is measured inside that process, around the call, so interpreter start-up is not counted.

Each destination is deleted after its run. The best round of each is reported, with the
throughput and the percentage of bare boto3's throughput in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from tooling import ensure_kserve_storage_venv, free_port

MiB = 1024 * 1024
BUCKET = "bench-models"
PREFIX = "llm"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1GiB, 256MiB)")
    units = {"b": 1, "kib": 1024, "mib": MiB, "gib": 1024 * MiB}
    return int(float(match.group(1)) * units[(match.group(2) or "b").lower()])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start")


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        config=Config(max_pool_connections=64),
    )


def upload(env: dict[str, str], size: int, big: int, small: int, small_size: int) -> int:
    s3 = client(env)
    s3.create_bucket(Bucket=BUCKET)
    block = os.urandom(MiB)
    per_file = size // big
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(big):
            path = Path(tmp) / f"w{i}"
            with open(path, "wb") as f:
                left = per_file
                while left > 0:
                    chunk = block[: min(left, MiB)]
                    # Distinct content per file and block, without paying os.urandom for all.
                    f.write(chunk[:-8] + (i * 100_000 + left).to_bytes(8, "little"))
                    left -= len(chunk)
            s3.upload_file(str(path), BUCKET, f"{PREFIX}/model-{i:05d}-of-{big:05d}.safetensors")
            path.unlink()
            total += per_file
    for j in range(small):
        s3.put_object(
            Bucket=BUCKET, Key=f"{PREFIX}/extra/file-{j:04d}.json", Body=os.urandom(small_size)
        )
        total += small_size
    return total


def bare_boto3(env: dict[str, str], dest: Path, workers: int, config: Any = None) -> None:
    s3 = client(env)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/")
        for o in page.get("Contents", [])
    ]

    def fetch(key: str) -> None:
        path = dest / key[len(PREFIX) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, key, str(path), Config=config)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fetch, keys))


def wharf(env: dict[str, str], dest: Path, workers: int) -> None:
    from wharf_storage import download

    download(f"s3://{BUCKET}/{PREFIX}", dest, env=env)


KSERVE_SCRIPT = textwrap.dedent(
    """
    import sys, time, logging
    logging.disable(logging.INFO)
    from kserve_storage import Storage
    start = time.perf_counter()
    Storage.download(sys.argv[1], sys.argv[2])
    print(f"ELAPSED {time.perf_counter() - start:.6f}")
    """
)


def kserve(env: dict[str, str], dest: Path, python: Path) -> float:
    proc = subprocess.run(
        [str(python), "-c", KSERVE_SCRIPT, f"s3://{BUCKET}/{PREFIX}", str(dest)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"ELAPSED (\S+)", proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(f"kserve-storage failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return float(match.group(1))


def tree_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--size", type=parse_size, default=parse_size("1GiB"), help="large files' total"
    )
    parser.add_argument("--big-files", type=int, default=8)
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--small-size", type=parse_size, default=parse_size("16KiB"))
    parser.add_argument("--workers", type=int, default=16, help="bare boto3's thread pool size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-kserve", action="store_true")
    args = parser.parse_args()

    moto, endpoint = start_moto()
    env = s3_env(endpoint)
    work = Path(tempfile.mkdtemp(prefix="wharf-bench-storage-"))
    try:
        kserve_python = None if args.skip_kserve else ensure_kserve_storage_venv()
        t0 = time.perf_counter()
        total = upload(env, args.size, args.big_files, args.small_files, args.small_size)
        n_files = args.big_files + args.small_files
        print(
            f"uploaded {n_files} objects, {total / MiB:.1f} MiB, to moto on {endpoint} "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        runners = ["bare boto3", "bare boto3 16MiB", "wharf"]
        runners += [] if kserve_python is None else ["kserve-storage"]
        tuned = TransferConfig(
            multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=8
        )
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(args.rounds):
            order = runners[r % len(runners) :] + runners[: r % len(runners)]
            for name in order:
                dest = work / f"{name.replace(' ', '-')}-{r}"
                start = time.perf_counter()
                if name.startswith("bare boto3"):
                    bare_boto3(env, dest, args.workers, tuned if "16MiB" in name else None)
                    elapsed = time.perf_counter() - start
                elif name == "wharf":
                    wharf(env, dest, args.workers)
                    elapsed = time.perf_counter() - start
                else:
                    assert kserve_python is not None
                    elapsed = kserve(env, dest, kserve_python)
                got = tree_bytes(dest)
                if got != (n_files, total):
                    raise SystemExit(f"{name}: downloaded {got}, expected {(n_files, total)}")
                shutil.rmtree(dest)
                times[name].append(elapsed)
                print(f"round {r + 1}: {name:<17} {elapsed:7.2f}s", flush=True)
        best = {name: min(ts) for name, ts in times.items()}
        base = total / MiB / best["bare boto3"]
        print()
        print(f"{'downloader':<18}{'best s':>8}{'MiB/s':>9}{'% of boto3':>12}   all rounds (s)")
        for name in runners:
            rate = total / MiB / best[name]
            rounds = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{name:<18}{best[name]:>8.2f}{rate:>9.1f}{100 * rate / base:>11.0f}%   {rounds}")
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

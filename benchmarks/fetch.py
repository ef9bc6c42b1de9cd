"""Fetch benchmark: a model-sized object from the test object store, alertops vs boto3's own download.

alertops' fetch (`step_runtime.storage.fetch.fetch_file`: one GET streamed to a temporary file
while its sha256 is computed, fsync, rename) against the peer an ML engineer would otherwise
script: boto3's `download_file` (s3transfer: ranged GETs on 10 threads) followed by a sha256 of
the file, the check alertops makes anyway. Both read the same object from the same store in the
same run, alternating, `--rounds` times each; the median is reported.

  eval "$(scripts/testenv env seaweedfs)"
  python benchmarks/fetch.py [--mb 256] [--rounds 3]

Last line: RESULT fetch mb_per_s=<alertops median> ratio_vs_boto3_download_file=<alertops/peer>
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

from step_runtime.spec.common import SecretKeyRef
from step_runtime.spec.files import FetchSpec, S3Access
from step_runtime.storage.fetch import FetchPolicy, fetch_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="object size in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="fetches per side (default 3)")
    args = parser.parse_args()
    endpoint = os.environ["ALERTOPS_S3_ENDPOINT"]
    key_id, secret = os.environ["ALERTOPS_S3_ACCESS_KEY_ID"], os.environ["ALERTOPS_S3_SECRET_ACCESS_KEY"]
    os.environ["ALERTOPS_SECRET_BENCH_ID"], os.environ["ALERTOPS_SECRET_BENCH_SECRET"] = key_id, secret
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
        aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))
    bucket, key = f"alertops-bench-{uuid.uuid4().hex[:8]}", "model.bin"
    client.create_bucket(Bucket=bucket)
    size = args.mb << 20
    with tempfile.TemporaryDirectory(dir=Path.home() / ".cache" / "alertops") as tmp:
        src = Path(tmp) / "src.bin"
        with open(src, "wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(1 << 20))
        pinned = hashlib.sha256(src.read_bytes()).hexdigest()
        client.upload_file(str(src), bucket, key)
        access = S3Access(endpoint=endpoint, access_key_id=SecretKeyRef(name="bench", key="id"),
                          secret_access_key=SecretKeyRef(name="bench", key="secret"))
        policy = FetchPolicy.from_spec(FetchSpec(size_limit=f"{args.mb + 1}Mi"))
        ours: list[float] = []
        peer: list[float] = []
        for i in range(args.rounds):
            dest = Path(tmp) / f"ours-{i}" / "model.bin"
            t0 = time.perf_counter()
            fetch_file("bench", f"s3://{bucket}/{key}", access, pinned, dest, policy)
            ours.append(time.perf_counter() - t0)
            dest.unlink()
            target = Path(tmp) / f"peer-{i}.bin"
            t0 = time.perf_counter()
            client.download_file(bucket, key, str(target))
            digest = hashlib.sha256()
            with open(target, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            assert digest.hexdigest() == pinned
            peer.append(time.perf_counter() - t0)
            target.unlink()
        client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
    mb = size / (1 << 20)
    ours_rate, peer_rate = mb / statistics.median(ours), mb / statistics.median(peer)
    print(f"object {args.mb} MiB, {args.rounds} rounds each")
    print(f"alertops fetch_file (stream + sha256 + fsync): {', '.join(f'{t:.2f}' for t in ours)} s -> {ours_rate:.0f} MiB/s")
    print(f"boto3 download_file + sha256:                  {', '.join(f'{t:.2f}' for t in peer)} s -> {peer_rate:.0f} MiB/s")
    print(f"RESULT fetch mb_per_s={ours_rate:.0f} ratio_vs_boto3_download_file={ours_rate / peer_rate:.2f}")


if __name__ == "__main__":
    main()

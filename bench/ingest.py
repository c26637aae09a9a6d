"""Ingestion benchmark: ~1 GB of CSV on a moto S3 server into a snapshot, ours vs a pandas baseline.

Setup (not timed): start ``moto_server`` on 127.0.0.1, write ``OBJECTS`` CSV objects of synthetic
rows (id, 6 floats, 3 ints, 2 categories, ~100 bytes a row) and upload them to a bucket.

Each side runs in a fresh child process; its wall time (interpreter start and imports included:
Airflow's for ours, boto3 and pandas for the baseline), the work time measured inside it after
imports, and its peak RSS are recorded:

* ``ours``: ``ingest_snapshot`` on the prefix, S3 read through the amazon provider's ``S3Hook``
  (an Airflow connection pointing at moto), streamed in 8 MiB blocks, 128k-row chunks, into a
  content-addressed snapshot (zstd Parquet + manifest) on a local artifact root.
* ``baseline``: for each object, boto3 ``download_file`` to local disk, ``pandas.read_csv``,
  ``DataFrame.to_parquet`` (pyarrow, zstd) -- one object in memory at a time.

Targets (issue 3): ours at least as fast as the baseline, peak RSS under 1/3 of the baseline's.
Run: ``python bench/ingest.py`` (``--quick``: ~60 MB, not committed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, print_table, quick_flag, run_measured, write_results
from tests.support.services import background_process, free_port

BIN = Path(sys.executable).parent
BUCKET = "bench-ingest"
ROWS_PER_MB = 12_300  # about 85 bytes a row

OURS = r"""
import json, logging, sys, time
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow_mlops_provider.core.ingest import ingest_snapshot
from airflow_mlops_provider.core.storage import Location
logging.basicConfig(level=logging.WARNING)
start = time.perf_counter()
client = S3Hook(aws_conn_id="bench").get_conn()
ref = ingest_snapshot(sys.argv[1], Location(sys.argv[2]), "bench", s3_client=client)
with open(sys.argv[3], "w") as out:
    json.dump({"work_s": time.perf_counter() - start, "rows": ref.rows}, out)
"""

BASELINE = r"""
import json, os, sys, time
import boto3, pandas as pd
bucket, prefix, out = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
s3 = boto3.client("s3", endpoint_url=os.environ["BENCH_ENDPOINT"])
keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
rows = 0
for number, key in enumerate(keys):
    local = os.path.join(out, f"{number}.csv")
    s3.download_file(bucket, key, local)
    frame = pd.read_csv(local)
    frame.to_parquet(os.path.join(out, f"{number}.parquet"), compression="zstd")
    rows += len(frame)
    del frame
    os.remove(local)
with open(sys.argv[4], "w") as handle:
    json.dump({"work_s": time.perf_counter() - start, "rows": rows}, handle)
"""


def write_csv_objects(folder: Path, total_mb: int, objects: int) -> list[Path]:
    """Synthetic CSV files, generated block by block with pyarrow (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    rows_per_object = total_mb * ROWS_PER_MB // objects
    block = 500_000
    paths, start = [], 0
    for number in range(objects):
        path = folder / f"part-{number:03d}.csv"
        with pacsv.CSVWriter(path, _schema()) as writer:
            for offset in range(0, rows_per_object, block):
                n = min(block, rows_per_object - offset)
                columns = {"id": np.arange(start, start + n)}
                for i in range(6):
                    columns[f"f{i}"] = np.round(rng.normal(100 * i, 10 + i, n), 4)
                for i in range(3):
                    columns[f"n{i}"] = rng.integers(0, 10 ** (i + 2), n)
                columns["country"] = rng.choice(["de", "fr", "it", "es", "nl", "pl"], n)
                columns["segment"] = rng.choice(["retail", "business", "public"], n)
                writer.write_table(pa.table(columns, schema=_schema()))
                start += n
        paths.append(path)
    return paths


def _schema():
    import pyarrow as pa

    fields = [("id", pa.int64())] + [(f"f{i}", pa.float64()) for i in range(6)]
    fields += [(f"n{i}", pa.int64()) for i in range(3)] + [("country", pa.string()), ("segment", pa.string())]
    return pa.schema(fields)


def main() -> None:
    quick = quick_flag()
    total_mb, objects = (60, 2) if quick else (1024, 2)
    work = WORK / "ingest"
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BENCH_ENDPOINT": endpoint,
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_BENCH": json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        ),
    }
    os.environ.update(env)
    with background_process(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, work / "moto.log"
    ):
        import boto3

        paths = write_csv_objects(work / "src", total_mb, objects)
        input_mb = sum(p.stat().st_size for p in paths) / 2**20
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        for path in paths:
            s3.upload_file(str(path), BUCKET, f"landing/{path.name}")
            path.unlink()
        print(f"uploaded {len(paths)} objects, {input_mb:.0f} MB of CSV, to moto at {endpoint}")

        ours_s, ours_rss = run_measured(
            [
                sys.executable,
                "-c",
                OURS,
                f"s3://{BUCKET}/landing/",
                (work / "ours").as_uri(),
                str(work / "o.json"),
            ]
        )
        baseline_dir = Path(tempfile.mkdtemp(dir=work, prefix="baseline-"))
        baseline_s, baseline_rss = run_measured(
            [sys.executable, "-c", BASELINE, BUCKET, "landing/", str(baseline_dir), str(work / "b.json")]
        )
        ours_inner, base_inner = (json.loads((work / f"{n}.json").read_text()) for n in ("o", "b"))
        assert ours_inner["rows"] == base_inner["rows"], (ours_inner, base_inner)
    snapshot_mb = sum(p.stat().st_size for p in (work / "ours").rglob("*.parquet")) / 2**20
    speed = baseline_s / ours_s
    rss_ratio = ours_rss / baseline_rss
    print_table(
        f"Ingest {input_mb:.0f} MB CSV ({objects} objects) from moto S3 to Parquet",
        [
            ("ours_s", ours_s, f"{input_mb / ours_s:.0f} MB/s"),
            (
                "baseline_s",
                baseline_s,
                f"{input_mb / baseline_s:.0f} MB/s (download_file + read_csv + to_parquet)",
            ),
            ("speedup", speed, "baseline_s / ours_s (target >= 1)"),
            ("ours_work_s", ours_inner["work_s"], "inside the child, after imports"),
            ("baseline_work_s", base_inner["work_s"], "inside the child, after imports"),
            ("ours_peak_rss_mb", ours_rss, ""),
            ("baseline_peak_rss_mb", baseline_rss, ""),
            ("rss_ratio", rss_ratio, "ours / baseline (target < 0.333)"),
        ],
    )
    write_results(
        "ingest",
        {
            "ours_s": round(ours_s, 3),
            "baseline_s": round(baseline_s, 3),
            "speedup": round(speed, 3),
            "ours_work_s": round(ours_inner["work_s"], 3),
            "baseline_work_s": round(base_inner["work_s"], 3),
            "rows": ours_inner["rows"],
            "ours_peak_rss_mb": round(ours_rss, 1),
            "baseline_peak_rss_mb": round(baseline_rss, 1),
            "rss_ratio": round(rss_ratio, 3),
            "input_mb": round(input_mb, 1),
            "objects": objects,
            "snapshot_mb": round(snapshot_mb, 1),
            "chunk_rows": 128_000,
            "block_mb": 8,
        },
        quick,
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write the Parquet fixtures of tests/fixtures/parquet/: the first 8 rows of the bundled GSM8K
train split (question/answer, as Hugging Face datasets stores them) in each codec a real
writer produces, so that `rlvr train --data FILE.parquet` is tested against files it did not
write itself.

Usage (from the repository root, in a throwaway virtual environment):

    python3 -m venv .venv-pq && .venv-pq/bin/pip install pyarrow==26.0.1
    .venv-pq/bin/python scripts/make_parquet_fixtures.py

pyarrow's "lz4" is the LZ4_RAW codec of the Parquet format (the legacy Hadoop-framed LZ4 is
read-only in pyarrow); "zstd" is polars' default and "snappy" pandas' and datasets' default.
"""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "gsm8k_train.jsonl"
OUT = ROOT / "tests" / "fixtures" / "parquet"
ROWS = 8
CODECS = ["zstd", "gzip", "lz4", "brotli", "snappy", "none"]


def main():
    with SOURCE.open() as f:
        rows = [json.loads(line) for _, line in zip(range(ROWS), f)]
    table = pa.table(
        {
            "question": [r["question"] for r in rows],
            "answer": [r["answer"] for r in rows],
        }
    )
    OUT.mkdir(parents=True, exist_ok=True)
    for codec in CODECS:
        path = OUT / f"gsm8k_{codec}.parquet"
        pq.write_table(table, path, compression=codec)
        meta = pq.ParquetFile(path).metadata
        written = meta.row_group(0).column(0).compression
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes, {written}, "
              f"{meta.created_by}")


if __name__ == "__main__":
    main()

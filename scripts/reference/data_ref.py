"""Parquet data files written by pyarrow, as the Hugging Face hub stores datasets, for
test/data-formats.test.ts, with the rows pyarrow reads back from each (what lorakit must read).

Writes into test/fixtures/data/:
- sst2.parquet: the first 300 rows of shared/data/datasets/sst2/dev.tsv as {sentence: string,
  label: int64, idx: int32}, snappy, in row groups of 128 rows (so a reader must cross groups).
- sst2-zstd.parquet: the same rows, zstd-compressed.
- chat.parquet: {messages: list<struct<role, content>>, source: string}, the layout of chat datasets.
- tokens.parquet: {input_ids: list<int64>, labels: list<int64>}, pre-tokenized rows.
- expected.json: {file: rows} as pyarrow's Table.to_pylist() gives them.

Run with the reference venv: .venv-ref/bin/python scripts/reference/data_ref.py
"""

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "data"
SHARED = Path(os.environ.get("LORAKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def sst2_rows(n: int) -> list[dict]:
    # GLUE's TSV has no quoting (the GLUE loader reads it with QUOTE_NONE).
    with open(SHARED / "datasets" / "sst2" / "dev.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"sentence": r["sentence"], "label": int(r["label"]), "idx": i} for i, r in enumerate(rows[:n])]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected: dict[str, list] = {}

    sst2 = pa.Table.from_pylist(
        sst2_rows(300),
        schema=pa.schema([("sentence", pa.string()), ("label", pa.int64()), ("idx", pa.int32())]),
    )
    pq.write_table(sst2, OUT / "sst2.parquet", row_group_size=128, compression="snappy")
    pq.write_table(sst2, OUT / "sst2-zstd.parquet", row_group_size=128, compression="zstd")

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    chat = pa.Table.from_pylist(
        [
            {
                "messages": [
                    {"role": "system", "content": "You answer briefly."},
                    {"role": "user", "content": "What colour is the sky?"},
                    {"role": "assistant", "content": "Blue."},
                ],
                "source": "a",
            },
            {
                "messages": [
                    {"role": "user", "content": "Name a fruit."},
                    {"role": "assistant", "content": "An apple."},
                    {"role": "user", "content": "Another?"},
                    {"role": "assistant", "content": "A pear."},
                ],
                "source": "b",
            },
        ],
        schema=pa.schema([("messages", pa.list_(message)), ("source", pa.string())]),
    )
    pq.write_table(chat, OUT / "chat.parquet", compression="snappy")

    tokens = pa.Table.from_pylist(
        [
            {"input_ids": [1, 400, 261, 300, 2], "labels": [-100, -100, 261, 300, 2]},
            {"input_ids": [1, 5, 6, 7], "labels": [1, 5, 6, 7]},
        ],
        schema=pa.schema([("input_ids", pa.list_(pa.int64())), ("labels", pa.list_(pa.int64()))]),
    )
    pq.write_table(tokens, OUT / "tokens.parquet", compression="snappy")

    for name in ["sst2.parquet", "sst2-zstd.parquet", "chat.parquet", "tokens.parquet"]:
        expected[name] = pq.read_table(OUT / name).to_pylist()
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} (pyarrow {pa.__version__})")


if __name__ == "__main__":
    main()

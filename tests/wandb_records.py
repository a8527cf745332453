"""Read an offline W&B run back: the records of its `.wandb` file (a LevelDB-style log of
protobuf `Record`s), so tests can check what W&B would show, not just that strings appear."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FILE_HEADER = struct.Struct("<4sHB")  # ':W&B', magic, version
RECORD_HEADER = struct.Struct("<IHB")  # checksum, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path | str) -> list[pb.Record]:
    data = Path(path).read_bytes()
    ident, _, _ = FILE_HEADER.unpack_from(data)
    assert ident == b":W&B", f"{path} is not a W&B run log"
    out, pending, offset = [], b"", FILE_HEADER.size
    while offset + RECORD_HEADER.size <= len(data):
        left = BLOCK - offset % BLOCK
        if left < RECORD_HEADER.size:  # block trailer: padding
            offset += left
            continue
        _, length, kind = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER.size
        chunk, offset = data[offset:offset + length], offset + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


class OfflineRun:
    """The parts of an offline run a test looks at."""

    def __init__(self, run_dir: Path | str):
        (self.path,) = Path(run_dir).rglob("offline-run-*/*.wandb")
        self.records = records(self.path)
        runs = [r.run for r in self.records if r.WhichOneof("record_type") == "run"]
        self.run = runs[0]

    @property
    def config(self) -> dict:
        """The run's config: what wandb.init got, then any later updates."""
        items = {i.key: json.loads(i.value_json) for i in self.run.config.update}
        for record in self.records:
            if record.WhichOneof("record_type") == "config":
                items.update({i.key: json.loads(i.value_json) for i in record.config.update})
        return items

    @property
    def history(self) -> list[dict]:
        return [{i.key or "/".join(i.nested_key): json.loads(i.value_json)
                 for i in r.history.item}
                for r in self.records if r.WhichOneof("record_type") == "history"]

    @property
    def step_metrics(self) -> dict[str, str]:
        """name or glob -> the metric it is plotted against."""
        return {(m.metric.name or m.metric.glob_name): m.metric.step_metric
                for m in self.records if m.WhichOneof("record_type") == "metric"}

    @property
    def summary(self) -> dict:
        values = {}
        for record in self.records:
            if record.WhichOneof("record_type") == "summary":
                values.update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                               for i in record.summary.update})
        return values

    @property
    def artifacts(self) -> list[pb.ArtifactRecord]:
        return [r.artifact for r in self.records if r.WhichOneof("record_type") == "artifact"]

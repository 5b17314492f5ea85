"""Parquet files (possibly compressed): each row's text column is one document, read a row group at a time."""

from __future__ import annotations

import shutil
import tempfile
from typing import Iterator

from engine.data.sources.base import RecordFile
from engine.data.sources.compression import compression_of, open_stream
from engine.errors import CorpusError


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError("reading Parquet needs the pyarrow package (pip install 'tui-gpt[data]')") from None
    return pq


class ParquetFile(RecordFile):
    kind = "parquet"

    def bytes_read(self) -> int:
        return self.counter.done

    def documents(self) -> Iterator[str]:
        pq = _pyarrow_parquet()
        with tempfile.TemporaryFile() as spill, self.path.open("rb") as raw:
            source = raw
            if compression_of(self.path):  # Parquet needs to seek: decompress to a temporary file first
                shutil.copyfileobj(open_stream(self.path, raw), spill, 2**20)
                spill.seek(0)
                source = spill
            try:
                parquet = pq.ParquetFile(source)
            except Exception as error:  # pyarrow.ArrowInvalid and kin
                raise CorpusError(f"{self.path} is not a readable Parquet file ({error})") from None
            self._check_column(parquet)
            n_groups = parquet.num_row_groups
            for group in range(n_groups):
                try:
                    column = parquet.read_row_group(group, columns=[self.text_field]).column(0)
                except Exception as error:
                    raise CorpusError(f"{self.path}: row group {group} cannot be read ({error})") from None
                for text in column.to_pylist():
                    if text and text.strip():
                        yield text
                self.counter.done = self.size_bytes * (group + 1) // n_groups

    def _check_column(self, parquet) -> None:
        import pyarrow as pa

        schema = parquet.schema_arrow
        if self.text_field not in schema.names:
            raise CorpusError(f"{self.path} has no column {self.text_field!r} (columns: {', '.join(schema.names)}); "
                              "choose one with --text-field")
        kind = schema.field(self.text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise CorpusError(f"{self.path}: column {self.text_field!r} holds {kind}, not text")

    def warnings(self) -> list[str]:
        return []

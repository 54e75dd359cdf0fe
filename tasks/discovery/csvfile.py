"""Reading a prospects CSV file: any common encoding and delimiter, and every row by its line.

Reading never stops at a bad row: each one is reported as {line, reason} (the physical line the
record starts on, the header being line 1) and the good rows become Candidates.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from partnerflow.tasks.discovery.columns import Candidate, fill_candidate, map_headers
from partnerflow.tasks.shared.webfetch import guess_decode


class ImportFileError(Exception):
    """The file as a whole cannot be read (not text, no header, no usable column)."""



@dataclass
class ParsedFile:
    candidates: list[Candidate]
    errors: list[dict[str, Any]]  # rows not imported: {line, reason}
    warnings: list[dict[str, Any]]  # rows imported with a value ignored or merged: {line, reason}
    encoding: str
    delimiter: str
    columns: dict[str, str]  # header as written -> field it feeds ("" = kept in `extra`)
    rows: int = 0


def decode_file(raw: bytes) -> tuple[str, str]:
    """(text, encoding): BOMs first, then strict UTF-8, then charset-normalizer's guess."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
                          (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError:
                break
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guessed = guess_decode(raw)
    if guessed is None or "\x00" in guessed[0]:
        raise ImportFileError("the file is not text in any encoding we recognise")
    return guessed


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: csv.Sniffer when it is sure, else the most frequent candidate."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    sample = "\n".join(text.splitlines()[:50])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        if first_line.count(delimiter) > 0:
            return delimiter
    except csv.Error:
        pass
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def parse_file(raw: bytes) -> ParsedFile:
    """Read every row; good ones become Candidates, bad ones errors with their line number."""
    text, encoding = decode_file(raw)
    if not text.strip():
        raise ImportFileError("the file is empty")
    # Excel writes a "sep=;" line first when it exports with a non-default delimiter.
    hint = re.match(r"sep=(.)\r?\n", text, re.I)
    delimiter = hint.group(1) if hint else sniff_delimiter(text)
    stream = io.StringIO(text, newline="")
    if hint:
        stream.readline()
    reader = csv.reader(stream, delimiter=delimiter, skipinitialspace=True)
    headers: list[str] | None = None
    header_line = 0
    while headers is None:
        try:
            row = next(reader)
        except StopIteration:
            raise ImportFileError("the file has no header row") from None
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: the header cannot be read ({exc})") from None
        if any(cell.strip() for cell in row):
            headers, header_line = [h.strip() for h in row], reader.line_num + (1 if hint else 0)
    mapping = map_headers(headers)
    if not {"email", "website"} & set(mapping.values()):
        raise ImportFileError(
            f"no email or website column found in the header (line {header_line}: {', '.join(headers)})")
    parsed = ParsedFile([], [], [], encoding, delimiter,
                        {h: mapping.get(i, "") for i, h in enumerate(headers)})

    while True:
        line = reader.line_num + 1 + (1 if hint else 0)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append({"line": line, "reason": f"unreadable row ({exc})"})
            continue
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        parsed.rows += 1
        if len(row) > len(headers) and any(c.strip() for c in row[len(headers):]):
            parsed.errors.append({"line": line, "reason": f"{len(row)} fields, but the header has {len(headers)}"})
            continue
        values: dict[str, str] = {}
        candidate = Candidate(line=line)
        for index, cell in enumerate(row[:len(headers)]):
            cell = cell.strip()
            if index in mapping:
                values[mapping[index]] = cell
            elif cell and headers[index]:
                candidate.extra[headers[index]] = cell
        reason = fill_candidate(candidate, values, parsed.warnings)
        if reason:
            parsed.errors.append({"line": line, "reason": reason})
        else:
            parsed.candidates.append(candidate)
    return parsed

"""Suggest a channel for an unknown export: read a sample, recognise its shape, write the YAML block.

``persona channels suggest FILE`` reads the first lines of a file (gzip too) and works out the format
(CSV with its delimiter or runs of blanks, JSON lines, Parquet), the header, the line ends and the
encoding, then looks at every column: timestamps (ISO-8601, epoch seconds/milliseconds/microseconds,
or a strptime format such as ``%Y%m%d`` or ``%d/%m/%Y``), id-like columns (the user, the event),
amounts, quantities, currencies, event types, categories, products and e-mail addresses. It prints a
``channels:`` block for ``persona.yaml`` and checks it by mapping the sample to canonical events with
the real reader, so the block works as printed; what it could not decide is said in comments.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from base.config import ChannelConfig, Settings

SAMPLE_BYTES = 1 << 20
"""How much of the file is looked at (decompressed)."""
MOSTLY = 0.95
"""Share of a column's sampled values that must fit a reading (exports carry a few malformed rows)."""

DELIMITERS = (",", ";", "\t", "|")
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
    "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y%m%d%H%M%S",
)
"""strptime formats tried, most specific first (a day-first and a month-first reading of the same
values are told apart by the values; when both fit, day-first is kept and a comment says so)."""
EPOCH_UNITS = (("s", 1e9), ("ms", 1e6), ("us", 1e3))
PLAUSIBLE = (pd.Timestamp("1970-01-02"), pd.Timestamp("2100-01-01"))
ISO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CURRENCY = re.compile(r"^[A-Z]{3}$")

HINTS: dict[str, tuple[str, ...]] = {
    "user_id": ("customer", "cust", "user", "client", "member", "account", "buyer", "shopper", "person", "household"),
    "event_id": ("id", "order", "transaction", "txn", "invoice", "receipt", "event_id", "uuid", "ticket", "interaction"),
    "timestamp": ("date", "time", "ts", "created", "day", "when", "at", "epoch", "ms", "timestamp"),
    "amount": ("amount", "price", "total", "revenue", "value", "sales", "spend", "paid", "usd", "eur", "gbp", "dollar"),
    "quantity": ("qty", "quantity", "units", "count", "items", "cds", "pieces"),
    "category": ("category", "cat", "department", "dept", "genre", "family", "segment", "group", "class"),
    "event_type": ("event", "type", "action", "status", "kind"),
    "product_id": ("sku", "product", "item", "article", "stock"),
    "currency": ("currency", "curr", "ccy"),
    "session_id": ("session",),
    "anonymous_id": ("anonymous", "anon", "cookie", "visitor"),
    "device_id": ("device_id", "deviceid", "idfa", "gaid"),
    "device": ("device", "platform", "os"),
    "phone": ("phone", "mobile", "tel", "telephone", "msisdn"),
}
"""Name fragments that make a column a likely source of a canonical field."""

EVENT_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("refund", "return", "refunded", "returned", "chargeback"), "refund"),
    (("cart", "basket"), "add_to_cart"),
    (("search", "query"), "search"),
    (("login", "signin", "sign", "identify", "logon"), "identify"),
    (("like",), "like"), (("share",), "share"), (("comment", "review"), "comment"),
    (("ticket", "support", "complaint"), "support_ticket"),
    (("purchase", "order", "completed", "complete", "paid", "buy", "sale", "checkout"), "purchase"),
    (("product", "item", "sku"), "product_view"),
    (("view", "pageview", "screen", "page", "visit"), "page_view"),
)
"""Words in an export's event values → the canonical event type (first match wins)."""


def canonical_event(value: str) -> str | None:
    """The canonical event type an export's event value most likely means (None: no idea)."""
    words = set(re.split(r"[^a-z]+", value.lower())) | {value.lower()}
    for hints, kind in EVENT_WORDS:
        if words & set(hints):
            return kind
    return None


@dataclass
class Sample:
    """The first lines of an export, as text columns, and what was learnt about the file itself."""

    path: Path
    format: str
    frame: pd.DataFrame
    delimiter: str = ","
    header: bool = True
    notes: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


@dataclass
class Suggestion:
    """A channel for ``persona.yaml``: the block as a mapping, the comments, and the sample check."""

    name: str
    channel: dict[str, Any]
    facts: list[str]
    notes: list[str]
    checked: str = ""

    def yaml(self) -> str:
        """The printed block: a comment line on the file, ``channels:``, the channel, then the notes."""
        lines = [f"# persona channels suggest: {'; '.join(self.facts)}"]
        if self.checked:
            lines.append(f"# checked: {self.checked}")
        lines += ["channels:", f"  {self.name}:"]
        for key, value in self.channel.items():
            lines.append(f"    {key}: {_flow(value)}")
        lines += [f"# note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    """One YAML value in flow style (mappings and lists on one line, strings quoted when needed)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_][\w./*-]*", value) \
        else str(value)


# --------------------------------------------------------------------------- the file


def _head(path: Path) -> bytes:
    """The first :data:`SAMPLE_BYTES` of the file, decompressed, cut at the last whole line."""
    with path.open("rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = f.read(SAMPLE_BYTES)
        more = bool(f.read(1))
    if more and b"\n" in data:
        data = data[: data.rfind(b"\n") + 1]
    return data


def _decode(data: bytes, facts: list[str], notes: list[str]) -> str:
    """Text of the sample; the encoding is named (the reader needs UTF-8)."""
    if data.startswith(b"\xef\xbb\xbf"):
        facts.append("UTF-8 with a byte-order mark")
        return data[3:].decode("utf-8", "replace")
    try:
        text = data.decode("utf-8")
        facts.append("UTF-8")
        return text
    except UnicodeDecodeError:
        facts.append("not UTF-8 (read as cp1252)")
        notes.append("the file is not UTF-8; rows with other bytes are quarantined: convert it first, e.g. "
                     "`iconv -f cp1252 -t utf-8 FILE > FILE.utf8`")
        return data.decode("cp1252", "replace")


def _delimiter(lines: list[str]) -> str:
    """The delimiter that splits every sample line into the same number (> 1) of fields."""
    probe = lines[:50]
    best, fields = ",", 1
    for candidate in (*DELIMITERS, "whitespace"):
        if candidate != "whitespace" and not all(candidate in line for line in probe):
            continue
        counts = {line.count(candidate) + 1 for line in probe} if candidate != "whitespace" else \
            {len(line.split()) for line in probe}
        if len(counts) == 1 and (n := counts.pop()) > fields:
            best, fields = candidate, n
    return best


def _is_value(text: str) -> bool:
    """Looks like data rather than a column name: a number, a date or an id with digits."""
    return bool(re.fullmatch(r"[-+]?\d[\d.,:/ T+-]*Z?", text.strip().strip('"')))


def read_sample(path: Path) -> Sample:
    """The first lines of ``path`` as a frame of text columns, with the file's format facts."""
    facts: list[str] = []
    notes: list[str] = []
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path).read_row_group(0)
        head = table.to_pandas().head(5000)
        frame = head.astype(str).where(head.notna(), None)
        return Sample(path, "parquet", frame, facts=["Parquet"], notes=notes)
    data = _head(path)
    if magic[:2] == b"\x1f\x8b":
        facts.append("gzip")
    crlf = b"\r\n" in data[:65536]
    text = _decode(data, facts, notes)
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no lines to look at")
    facts.append("CRLF line ends" if crlf else "LF line ends")
    if lines[0].lstrip().startswith("{"):
        rows = []
        for line in lines[:5000]:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        frame = pd.DataFrame(rows).astype(object)
        frame = frame.where(frame.notna(), None).map(lambda v: None if v is None else str(v))
        return Sample(path, "jsonl", frame, facts=["JSON lines", *facts], notes=notes)
    delimiter = _delimiter(lines)
    split = (lambda line: line.split()) if delimiter == "whitespace" else None
    first = split(lines[0]) if split else next(iter(pd.read_csv(io.StringIO(lines[0]), sep=delimiter, header=None,
                                                                dtype=str, keep_default_na=False).itertuples(index=False)))
    header = not any(_is_value(str(v)) for v in first)
    body = "\n".join(lines[: 5001])
    if delimiter == "whitespace":
        rows = [line.split() for line in lines[: 5001]]
        frame = pd.DataFrame(rows[1:] if header else rows, columns=rows[0] if header else None)
    else:
        frame = pd.read_csv(io.StringIO(body), sep=delimiter, header=0 if header else None, dtype=str,
                            keep_default_na=False, na_values=[""])
    if not header:
        frame.columns = [f"column_{i + 1}" for i in range(frame.shape[1])]
        notes.append("the file has no header line; the reader names columns from the first line, so add one "
                     f"(e.g. `sed -i '1i {(',' if delimiter == 'whitespace' else delimiter).join(frame.columns)}' "
                     "FILE`) or the first row becomes the names")
    frame = frame.astype(object).where(frame.notna(), None)
    shown = {"\t": "tab", "whitespace": "runs of blanks"}.get(delimiter, repr(delimiter))
    facts[:0] = [f"CSV separated by {shown}", "a header line" if header else "no header line"]
    return Sample(path, "csv", frame, delimiter=delimiter, header=header, facts=facts, notes=notes)


# --------------------------------------------------------------------------- the columns


def _named(column: str, field: str) -> bool:
    words = re.split(r"[^a-z0-9]+", column.lower())
    joined = column.lower()
    return any(h in words or (len(h) > 3 and h in joined) for h in HINTS[field])


def _fits(ok: pd.Series) -> bool:
    """Whether most values (:data:`MOSTLY`) fit a reading."""
    return len(ok) > 0 and float(ok.mean()) >= MOSTLY


def _numbers(values: pd.Series) -> pd.Series | None:
    """The values as numbers when most of them are (the others NaN), else None."""
    parsed = pd.to_numeric(values, errors="coerce")
    return parsed if _fits(parsed.notna()) else None


def timestamp_spec(values: pd.Series) -> tuple[dict[str, Any], str] | None:
    """How a column writes time (``TimestampSpec`` fields) and a note when the reading is ambiguous."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numbers far outside the datetime range
        return _timestamp_spec(values)


def _timestamp_spec(values: pd.Series) -> tuple[dict[str, Any], str] | None:
    text = values.astype(str).str.strip()
    if _fits(text.str.match(ISO_OFFSET)):
        return {"unit": "iso8601"}, ""
    numbers = _numbers(text)
    if numbers is not None and _fits(text.str.fullmatch(r"\d{9,17}(\.\d+)?")):
        for unit, per in EPOCH_UNITS:
            times = pd.to_datetime(numbers.where(numbers.abs() < 1e17) * per, errors="coerce")
            if _plausible(times):
                return {"unit": unit, "timezone": "UTC"}, ""
    fits = []
    for fmt in TIME_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if _plausible(parsed):
            fits.append(fmt)
    if fits:
        fmt = fits[0]
        other = [f for f in fits[1:] if f.replace("%d", "D").replace("%m", "%d").replace("D", "%m") == fmt]
        note = (f"both {fmt} and {other[0]} read every sampled value: {fmt} (day first) is assumed"
                if other else "")
        return {"unit": "format", "format": fmt, "timezone": "UTC"}, note
    if _fits(text.str.match(ISO_DATE)):
        return {"unit": "iso8601", "timezone": "UTC"}, ""
    return None


def _plausible(times: pd.Series) -> bool:
    """Most values are times between 1970 and 2100."""
    return _fits(times.notna() & (times >= PLAUSIBLE[0]) & (times < PLAUSIBLE[1]))


@dataclass(frozen=True)
class Profile:
    """What one column looks like."""

    name: str
    distinct: int
    rows: int
    integer: bool
    number: bool
    decimals: bool
    nonnegative: bool
    time: tuple[dict[str, Any], str] | None
    emails: bool
    currency: bool


def profile(name: str, values: pd.Series) -> Profile:
    """The traits of one column that decide what it maps to."""
    present = values.dropna().astype(str).str.strip()
    present = present.loc[present != ""]
    numbers = _numbers(present) if len(present) else None
    return Profile(
        name=name, distinct=int(present.nunique()), rows=len(present),
        integer=numbers is not None and _fits(present.str.fullmatch(r"[-+]?\d+")),
        number=numbers is not None,
        decimals=numbers is not None and bool(present.str.contains(r"\.\d").any()),
        nonnegative=numbers is not None and bool((numbers.dropna() >= 0).all()),
        time=timestamp_spec(present) if len(present) else None,
        emails=bool(len(present)) and bool(present.str.match(EMAIL).mean() > 0.9),
        currency=_fits(present.str.match(CURRENCY)) and present.nunique() <= 10,
    )


def _unique_columns(frame: pd.DataFrame) -> set[str]:
    """Columns whose values identify a line (counted over distinct lines: a re-delivered line is no
    evidence against an id): the candidates for the event id."""
    lines = frame.drop_duplicates()
    return {str(c) for c in lines.columns if lines[c].notna().all() and lines[c].is_unique}


def _pick(profiles: list[Profile], taken: set[str], field: str, ok: Any) -> str | None:
    """The column for ``field``: the first fitting column whose name hints at it, else the first fitting one."""
    fitting = [p for p in profiles if p.name not in taken and ok(p)]
    named = [p for p in fitting if _named(p.name, field)]
    chosen = (named or fitting or [None])[0]
    return chosen.name if chosen else None


def suggest_channel(path: Path, *, name: str | None = None, settings: Settings | None = None,
                    currency: str | None = None, timezone: str = "UTC") -> Suggestion:
    """A channel block for ``path``; with ``settings`` its glob is relative to the data directory and the
    sample is mapped to canonical events with the real reader to check the block."""
    sample = read_sample(path)
    frame = sample.frame
    stem = re.sub(r"[_-]?\d{4}([_-]?\d{2}){0,2}$", "", path.name.split(".")[0].lower())  # orders_2026-09
    name = name or re.sub(r"[^a-z0-9_]+", "_", stem).strip("_") or "export"
    profiles = [profile(str(c), frame[c]) for c in frame.columns]
    rows = len(frame)
    taken: set[str] = set()
    columns: dict[str, str] = {}
    notes = list(sample.notes)

    def take(field: str, ok: Any) -> None:
        column = _pick(profiles, taken, field, ok)
        if column is not None:
            columns[field] = column
            taken.add(column)

    take("timestamp", lambda p: p.time is not None and not (  # a unique number read as a date is an id
        p.time[0]["unit"] == "format" and p.integer and p.distinct == p.rows and not _named(p.name, "timestamp")))
    if "timestamp" not in columns:
        raise ValueError(f"{path}: no column reads as a timestamp (ISO-8601, epoch numbers or a date format); "
                         "a channel needs one")
    time_spec, time_note = next(p.time for p in profiles if p.name == columns["timestamp"])  # type: ignore[misc]
    if time_note:
        notes.append(time_note)
    unique = _unique_columns(frame)
    take("event_id", lambda p: p.name in unique and rows > 1 and not p.decimals and _named(p.name, "event_id"))
    take("user_id", lambda p: not p.decimals and not p.emails and p.distinct > 1
         and ((p.integer and p.distinct < p.rows) or _named(p.name, "user_id")) and not _named(p.name, "quantity"))
    take("amount", lambda p: p.number and p.nonnegative and (p.decimals or _named(p.name, "amount"))
         and not _named(p.name, "quantity"))
    take("quantity", lambda p: p.integer and p.nonnegative and p.distinct <= 100 and _named(p.name, "quantity"))
    take("currency", lambda p: p.currency)
    take("event_type", lambda p: not p.number and p.time is None and 1 <= p.distinct <= 30
         and _named(p.name, "event_type"))
    take("category", lambda p: not p.number and p.time is None and 1 < p.distinct <= 200
         and p.distinct < max(3, p.rows // 5) and _named(p.name, "category"))
    take("product_id", lambda p: not p.decimals and p.time is None and _named(p.name, "product_id"))
    take("session_id", lambda p: p.time is None and _named(p.name, "session_id"))
    take("anonymous_id", lambda p: p.time is None and not p.decimals and _named(p.name, "anonymous_id"))
    take("device_id", lambda p: p.time is None and not p.decimals and _named(p.name, "device_id"))
    take("device", lambda p: not p.number and p.distinct <= 20 and _named(p.name, "device"))
    emails = [p.name for p in profiles if p.name not in taken and p.emails]
    phones = [p.name for p in profiles if p.name not in taken and p.name not in emails and _named(p.name, "phone")
              and _fits(frame[p.name].dropna().astype(str).str.fullmatch(r"\+?[\d\s().-]{7,}"))]
    if "user_id" not in columns:
        notes.append("no column looks like a customer id: events without a user are quarantined; map "
                     "user_id to the column that names the customer")
    channel: dict[str, Any] = {
        "path": _glob(path, name, settings),
        "format": sample.format,
    }
    if sample.format == "csv":
        channel["delimiter"] = sample.delimiter
    channel["columns"] = columns
    channel["timestamp"] = {**time_spec, **({"timezone": timezone} if "timezone" in time_spec else {})}
    if "currency" not in columns and "amount" in columns:
        channel["currency"] = currency or (settings.base_currency if settings is not None else "EUR")
        if not currency:
            notes.append(f"no currency column: amounts are taken to be in {channel['currency']} (the base "
                         "currency); change `currency:` if the export uses another (its rate goes in fx_rates)")
    if "event_type" in columns:
        seen = sorted(frame[columns["event_type"]].dropna().astype(str).unique())
        mapped = {v: kind for v in seen if (kind := canonical_event(v)) is not None}
        channel["event_types"] = mapped
        unmapped = [v for v in seen if v not in mapped]
        if unmapped:
            notes.append(f"event type values without a canonical type (their rows are quarantined until "
                         f"mapped in event_types): {', '.join(unmapped[:10])}")
    else:
        channel["event_type"] = "purchase" if "amount" in columns else "page_view"
    if emails or phones:
        channel["pii"] = {**{c: "email" for c in emails}, **{c: "phone" for c in phones}}
    if "category" in columns:
        values = frame[columns["category"]].dropna().astype(str).value_counts().index[:20].tolist()
        notes.append(f"categories seen: {', '.join(values)}: list the ones to model under features.categories")
    else:
        notes.append("no category column: set features.categories: [] (no affinity features, no category model)")
    if "event_id" not in columns:
        repeats = int(frame.duplicated().sum())
        if repeats:
            channel["key_on_line"] = True
            notes.append(f"no id column and {repeats} identical lines in the sample: key_on_line keeps each one "
                         "(a file delivered again is still taken once); remove it if your export repeats lines "
                         "by mistake, or if later exports overlap earlier ones")
        else:
            notes.append("no id column: an event is identified by its mapped fields; set key_on_line: true if "
                         "identical lines are separate events")
    unused = [p.name for p in profiles if p.name not in taken and p.name not in emails and p.name not in phones]
    if unused:
        notes.append(f"columns not mapped: {', '.join(unused)}")
    suggestion = Suggestion(name, channel, [path.name, *sample.facts, f"{rows} rows sampled"], notes)
    suggestion.checked = check(path, suggestion, settings)
    return suggestion


def _glob(path: Path, name: str, settings: Settings | None) -> str:
    """The channel's glob: the file's folder under the data directory when it is there, else raw/NAME/."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if settings is not None:
        root = settings.data_dir.resolve()
        folder = path.resolve().parent
        if folder.is_relative_to(root):
            return f"{folder.relative_to(root).as_posix()}/*{suffix}"
    return f"raw/{name}/*{suffix}"


def check(path: Path, suggestion: Suggestion, settings: Settings | None) -> str:
    """Map the file with the suggested channel through the real reader and canonical mapping; a summary."""
    from ingestion.canonical import MissingColumns, canonicalise_table
    from ingestion.readers import read_channel_file

    cfg = ChannelConfig.model_validate(suggestion.channel)
    if settings is None:
        return "channel validated (no settings to map the sample with)"
    if cfg.currency and cfg.currency not in settings.fx_rates:
        return f"currency {cfg.currency} has no entry in fx_rates of {settings.config_path}: add its rate"
    raw = read_channel_file(path, cfg)
    if raw.error:
        return f"the reader refused the file: {raw.error}"
    try:
        mapped = canonicalise_table(raw.table, suggestion.name, cfg, settings, str(path))
    except MissingColumns as e:
        return f"columns missing: {e}"
    total = raw.table.num_rows + len(raw.rejects)
    return (f"{mapped.events.num_rows} of {total} rows map to canonical events"
            + (f" ({len(mapped.rejects)} rejected by the mapping, {len(raw.rejects)} unreadable)"
               if len(mapped.rejects) or raw.rejects else ""))

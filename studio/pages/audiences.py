"""Audiences: a segment and/or a filter over persona fields; export as CSV, sync to a webhook or a CSV
drop (each `persona update` syncs too), with the delivery log."""

from __future__ import annotations

from pydantic import ValidationError

from base.config import ConfigError
from studio.audiences import (
    PERSONA_FIELDS,
    Audience,
    delete_audience,
    export_csv,
    load_audiences,
    save_audience,
)
from studio.context import Req
from studio.html import error, esc, ok, options, page, rows_table
from studio.sync import deliveries, sync_audience

OPS = ("<", "<=", ">", ">=", "==", "!=")
FILTERS = 3


def audiences(r: Req, message: str = "", problem: str = "") -> str:
    """The audiences page."""
    agg = r.hooks.cache.get(r.settings)
    found = load_audiences(r.settings)
    rows = []
    for a in found.values():
        size = int(a.members(agg.current).sum()) if agg is not None else "?"
        where = {"webhook": a.url, "csv": a.folder, "none": "-"}[a.destination]
        actions = f"<a href='{r.base}/audiences/{a.name}.csv'>CSV</a>"
        if r.caller.may("editor"):
            actions += "".join(f" <form method='post' action='{r.base}/audiences/{a.name}/{act}' style='display:inline'>"
                               f"<button id='{act}-{a.name}'>{act}</button></form>" for act in ("sync", "delete"))
        rule = " and ".join([f"segment = {a.segment}"] * bool(a.segment)
                            + [f"{c.field} {c.op} {c.value:g}" for c in a.conditions])
        rows.append(f"<tr><td>{esc(a.name)}</td><td>{esc(rule)}</td><td class='num'>{size}</td>"
                    f"<td>{esc(a.destination)}: {esc(where)}</td><td>{actions}</td></tr>")
    listing = ("<table id='audiences'><tr><th>audience</th><th>who</th><th>members now</th><th>destination</th>"
               f"<th></th></tr>{''.join(rows)}</table>") if rows else "<p class='muted'>no audience yet</p>"
    body = (ok(message) if message else "") + (error(problem) if problem else "") + listing
    if r.caller.may("editor"):
        body += _form(r, sorted(agg.current["segment"].unique()) if agg is not None else [])
    log = deliveries(r.settings)
    body += "<h2>Delivery log</h2>" + rows_table(
        ["at", "audience", "destination", "attempt", "status", "entered", "left", "error"],
        [(d["at"], d["audience"], d["destination"], d["attempt"], d["status"], d["entered"], d["left"], d["error"])
         for d in log], "deliveries")
    return page("Audiences", body, r.base, r.caller.name)


def _form(r: Req, segments: list[str]) -> str:
    conds = "".join(f"<div>filter <select name='c{j}.field'>{options(['', *PERSONA_FIELDS], '')}</select> "
                    f"<select name='c{j}.op'>{options(OPS, '>=')}</select> <input name='c{j}.value' size='8'></div>"
                    for j in range(FILTERS))
    return (f"<h2>New audience</h2><form id='new-audience' method='post' action='{r.base}/audiences'>"
            "name <input name='name' required> description <input name='description' size='40'><br>"
            f"segment <select name='segment'>{options(['', *segments], '')}</select>{conds}"
            f"destination <select name='destination'>{options(['none', 'webhook', 'csv'], 'none')}</select> "
            "webhook url <input name='url' size='40'> secret env <input name='secret_env' placeholder='PERSONA_HOOK_SECRET'> "
            "csv folder <input name='folder' placeholder='exports/crm'><br><button id='create'>save audience</button></form>")


def create(r: Req) -> str:
    """POST /audiences: validate and save."""
    conds = []
    for j in range(FILTERS):
        field, value = r.f(f"c{j}.field"), r.f(f"c{j}.value")
        if not field and not value:
            continue
        try:
            conds.append({"field": field, "op": r.f(f"c{j}.op"), "value": float(value)})
        except ValueError:
            return audiences(r, problem=f"filter {j + 1}: value {value!r} is not a number")
    try:
        a = Audience(name=r.f("name"), description=r.f("description"), segment=r.f("segment"), conditions=conds,
                     destination=r.f("destination", "none"), url=r.f("url"), secret_env=r.f("secret_env"),
                     folder=r.f("folder"))
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'audience'}: {x['msg'].removeprefix('Value error, ')}"
                         for x in e.errors())
        return audiences(r, problem=f"not saved: {msgs}")
    save_audience(r.settings, a)
    return audiences(r, message=f"audience {a.name} saved")


def _find(r: Req, name: str) -> Audience:
    found = load_audiences(r.settings).get(name)
    if found is None:
        raise ConfigError(f"no audience named {name!r}")
    return found


def sync(r: Req, name: str) -> str:
    """POST /audiences/{name}/sync: deliver its changes now."""
    try:
        res = sync_audience(r.settings, _find(r, name))
    except ConfigError as e:
        return audiences(r, problem=str(e))
    text = f"{name}: {res.status} (+{res.entered} entered, -{res.left} left, {res.attempts} tries)"
    return audiences(r, problem=f"{text}: {res.error}") if res.status == "failed" else audiences(r, message=text)


def delete(r: Req, name: str) -> str:
    """POST /audiences/{name}/delete."""
    delete_audience(r.settings, name)
    return audiences(r, message=f"audience {name} deleted")


def csv(r: Req, name: str) -> bytes:
    """GET /audiences/{name}.csv: the current members."""
    agg = r.hooks.cache.get(r.settings)
    if agg is None:
        raise ConfigError("no current personas yet (run persona update)")
    return export_csv(_find(r, name), agg.current.reset_index(drop=True))

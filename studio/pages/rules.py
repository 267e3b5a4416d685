"""Segment rules: edit ``segments.yaml`` in a form with a live preview on the current personas; saving
validates (a bad rule never reaches the file), writes atomically and records the version; any earlier
version can be restored."""

from __future__ import annotations

from typing import Any

import yaml

from base.config import ConfigError, SegmentRule, load_segment_file
from studio import rule_versions
from studio.context import Req
from studio.html import error, esc, ok, options, page, rows_table, table
from studio.preview import Preview, preview

OPS = ("<", "<=", ">", ">=", "==", "!=")
BLANK_CONDITIONS = 2
PREVIEW_JS = """
<script>
(function(){const form=document.getElementById('rules');let timer=null;
function refresh(){const body=new URLSearchParams(new FormData(form));
fetch(form.dataset.preview,{method:'POST',body:body,headers:{'Content-Type':'application/x-www-form-urlencoded'}})
.then(r=>r.text()).then(t=>{document.getElementById('preview').innerHTML=t;});}
form.addEventListener('input',()=>{clearTimeout(timer);timer=setTimeout(refresh,250);});
form.addEventListener('change',()=>{clearTimeout(timer);timer=setTimeout(refresh,50);});})();
</script>"""


def known_fields(r: Req) -> set[str]:
    """Fields a rule may name: the served models' features and the predictions."""
    if r.hooks.known_fields is not None:
        return r.hooks.known_fields()
    from training.targets import segment_inputs

    agg = r.hooks.cache.get(r.settings)
    cols = set(agg.current.select_dtypes("number").columns) if agg is not None else set()
    return cols | set(segment_inputs())


def parse(form: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The rules as the form sent them (plain dicts, in the order given), with errors naming rule and condition."""
    def get(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    rules: list[tuple[float, int, dict[str, Any]]] = []
    count = int(get("rules") or 0)
    for i in range(count):
        name, where = get(f"r{i}.name"), f"rule {i + 1}"
        conds = []
        for j in range(int(get(f"r{i}.conds") or 0)):
            field, op, value = get(f"r{i}.c{j}.field"), get(f"r{i}.c{j}.op"), get(f"r{i}.c{j}.value")
            if not field and not value:
                continue
            if not field:
                raise ConfigError(f"{where} ({name or 'unnamed'}), condition {j + 1}: choose a field")
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(f"{where} ({name or 'unnamed'}), condition {j + 1}: value {value!r} is not a number") from None
            conds.append({"field": field, "op": op, "value": number})
        if get(f"r{i}.delete") or (not name and not conds and not get(f"r{i}.description")):
            continue
        if not name:
            raise ConfigError(f"{where}: give the rule a name (or remove its conditions)")
        try:
            order = float(get(f"r{i}.order") or i + 1)
        except ValueError:
            raise ConfigError(f"{where} ({name}): position {get(f'r{i}.order')!r} is not a number") from None
        rules.append((order, i, {"name": name, "description": get(f"r{i}.description"), "all": conds}))
    return [item for _, _, item in sorted(rules, key=lambda t: (t[0], t[1]))]


def _form(r: Req, rules: list[dict[str, Any]], digest: str, fields: list[str]) -> str:
    blocks = []
    for i, rule in enumerate([*rules, {"name": "", "description": "", "all": []}]):
        conds = [*rule["all"], *({"field": "", "op": ">=", "value": ""} for _ in range(BLANK_CONDITIONS))]
        rows = "".join(
            f"<div>field <select name='r{i}.c{j}.field'>{options(['', *fields], c['field'])}</select> "
            f"<select name='r{i}.c{j}.op'>{options(OPS, c['op'])}</select> "
            f"<input name='r{i}.c{j}.value' size='8' value='{esc(_plain(c['value']))}'></div>" for j, c in enumerate(conds))
        title = esc(rule["name"]) if rule["name"] else "new rule"
        blocks.append(
            f"<div class='rule'><b>{title}</b> · position <input name='r{i}.order' size='3' value='{i + 1}'> "
            f"name <input name='r{i}.name' value='{esc(rule['name'])}'> description "
            f"<input name='r{i}.description' size='40' value='{esc(rule.get('description', ''))}'> "
            f"<label><input type='checkbox' name='r{i}.delete' value='1'> remove</label>"
            f"<input type='hidden' name='r{i}.conds' value='{len(conds)}'>{rows}</div>")
    return (f"<form id='rules' method='post' action='{r.base}/rules/save' data-preview='{r.base}/rules/preview'>"
            f"<input type='hidden' name='rules' value='{len(rules) + 1}'><input type='hidden' name='digest' value='{digest}'>"
            "<p class='muted'>The first rule whose conditions all hold names the segment; the last rule must have "
            "no conditions (everyone else).</p>"
            + "".join(blocks) +
            "note <input name='note' size='50' placeholder='why (recorded with the version)'> "
            "<button id='save'>save rules</button></form>")


def _plain(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _dump(rules: list[SegmentRule]) -> list[dict[str, Any]]:
    return [{"name": x.name, "description": x.description, "all": [c.model_dump() for c in x.all]} for x in rules]


def render_preview(p: Preview) -> str:
    """The preview fragment."""
    sizes = rows_table(["segment", "users now", "with this edit", "change"],
                       [(s, a, b, f"{b - a:+d}") for s, a, b in p.sizes], "preview-sizes")
    moves = rows_table(["from", "to", "users"], p.moves) if p.moves else "<p>nobody changes segment</p>"
    overlap = table(p.overlap.reset_index().rename(columns={"index": "rule"}))
    return (f"<div id='preview-body'><p><b id='preview-changed'>{p.changed:,}</b> of {p.users:,} users would change "
            f"segment.</p>{sizes}<h3>Who moves</h3>{moves}"
            f"<h3>{esc(p.focus)}: {p.entered_count:,} in, {p.left_count:,} out</h3>"
            f"<p>in: {esc(', '.join(p.entered)) or '-'}<br>out: {esc(', '.join(p.left)) or '-'}</p>"
            f"<h3>Sample of {esc(p.focus)} members</h3>{table(p.sample, 'preview-sample')}"
            f"<h3>Overlap (users matching both rules' conditions, order ignored)</h3>{overlap}</div>")


def _saved(r: Req) -> tuple[list[SegmentRule], str]:
    path = rule_versions.rules_file(r.settings)
    text = path.read_text(encoding="utf-8")
    return load_segment_file(path), rule_versions.digest(text)


def preview_fragment(r: Req) -> str:
    """POST /rules/preview: the effect of the form's rules (or the error that keeps them from being saved)."""
    agg = r.hooks.cache.get(r.settings)
    if agg is None:
        return "<p class='muted'>no current personas yet (run persona update)</p>"
    try:
        candidate = rule_versions.validate(parse(r.form), known_fields(r))
    except ConfigError as e:
        return error(str(e))
    saved, _ = _saved(r)
    return render_preview(preview(agg.current.reset_index(drop=True), saved, candidate, r.f("focus") or None))


def rules(r: Req, message: str = "", problem: str = "", items: list[dict[str, Any]] | None = None) -> str:
    """The rules page (the form, the preview area, the versions)."""
    saved, digest = _saved(r)
    fields = sorted(known_fields(r))
    body = (ok(message) if message else "") + (error(problem) if problem else "")
    body += _form(r, items if items is not None else _dump(saved), digest, fields)
    body += "<h2>Preview on current personas</h2><div id='preview'><p class='muted'>edit a rule to see its effect</p></div>"
    body += PREVIEW_JS + _versions(r)
    return page("Segment rules", body, r.base, r.caller.name)


def _versions(r: Req) -> str:
    found = rule_versions.history(r.settings)
    if not found:
        return "<h2>Versions</h2><p class='muted'>no version saved from the studio yet</p>"
    rows = []
    for v in found:
        restore = (f"<form method='post' action='{r.base}/rules/restore' style='display:inline'>"
                   f"<input type='hidden' name='version' value='{v.version}'><button>restore</button></form>"
                   if r.caller.may("editor") else "")
        rows.append(f"<tr><td>{v.version}</td><td>{esc(v.at)}</td><td>{esc(v.by)}</td><td>{esc(v.note)}</td>"
                    f"<td><details><summary>diff</summary><pre>{esc(v.diff)}</pre></details></td><td>{restore}</td></tr>")
    return ("<h2>Versions</h2><table id='versions'><tr><th>version</th><th>when</th><th>who</th><th>note</th>"
            f"<th>diff</th><th></th></tr>{''.join(rows)}</table>")


def save(r: Req) -> str:
    """POST /rules/save: validate, write atomically, record the version; on any problem nothing is written."""
    try:
        items = parse(r.form)
    except ConfigError as e:
        return rules(r, problem=f"not saved: {e}")
    try:
        candidate = rule_versions.validate(items, known_fields(r))
        v = rule_versions.save(r.settings, candidate, r.caller.name, r.f("note"), expected_digest=r.f("digest"))
    except ConfigError as e:
        return rules(r, problem=f"not saved: {e}", items=items)
    return rules(r, message=f"saved as version {v.version}; the service uses the new rules from its next request")


def restore(r: Req) -> str:
    """POST /rules/restore: save an earlier version again."""
    try:
        v = rule_versions.restore(r.settings, int(r.f("version") or 0), r.caller.name, known_fields(r))
    except (ConfigError, ValueError, yaml.YAMLError) as e:
        return rules(r, problem=f"not restored: {e}")
    return rules(r, message=f"{v.note}: saved as version {v.version}")

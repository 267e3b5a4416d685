"""Models (admin actions): champion and challenger per target with the gate's reasons; promote the
challenger or roll back the champion after a confirmation (the gate's own functions decide)."""

from __future__ import annotations

import json
from typing import Any

from studio.context import Req
from studio.html import error, esc, ok, page

ACTIONS = {"promote": "promote the challenger (the gate decides; its reasons are shown if it refuses)",
           "rollback": "move champion back to the version it replaced"}


def _version(ml: Any, ref: Any) -> dict[str, Any]:
    from training.registry import client

    c = client(ml)
    mv = c.get_model_version(ref.name, ref.version)
    decision = json.loads(mv.tags.get("last_decision", "{}") or "{}")
    metrics = {k[5:]: v for k, v in c.get_run(ref.run_id).data.metrics.items() if k.startswith("eval_")}
    return {"version": ref.version, "decision": decision, "metrics": metrics,
            "previous": mv.tags.get("previous_champion", "")}


def models(r: Req, message: str = "", problem: str = "") -> str:
    """The models page."""
    from training.registry import alias_version
    from training.targets import TARGETS

    ml = r.settings.ml
    body = (ok(message) if message else "") + (error(problem) if problem else "")
    for t in TARGETS:
        primary = t.primary(ml.gate)
        cells = []
        for alias in (ml.champion_alias, ml.challenger_alias):
            ref = alias_version(ml, t.key, alias)
            if ref is None:
                cells.append(f"<td>{alias}: none</td>")
                continue
            v = _version(ml, ref)
            d = v["decision"]
            score = v["metrics"].get(primary)
            cells.append(f"<td><b>{alias} v{esc(v['version'])}</b> · {esc(primary)} "
                         f"{'-' if score is None else f'{score:.4g}'}<br><span class='muted'>{esc(d.get('action', ''))} by "
                         f"{esc(d.get('by', ''))} at {esc(d.get('at', ''))}</span><br>{esc(d.get('why', ''))}</td>")
        actions = ""
        if r.caller.may("admin"):
            actions = "".join(f"<a href='{r.base}/models/confirm?target={t.key}&action={a}' id='{a}-{t.key}'>{a}</a> "
                              for a in ACTIONS)
        body += (f"<h2>{esc(t.key)} ({esc(ml.model_name(t.key))})</h2><table class='model'><tr>{''.join(cells)}</tr></table>"
                 + actions)
    return page("Models", body, r.base, r.caller.name)


def confirm(r: Req) -> str:
    """GET /models/confirm: what the action will do, and the button that does it."""
    target, action = r.q("target"), r.q("action")
    from training.targets import target_keys

    if target not in target_keys() or action not in ACTIONS:
        return models(r, problem=f"unknown target {target!r} or action {action!r}")
    body = (f"<p>{esc(action)} <b>{esc(r.settings.ml.model_name(target))}</b>: {esc(ACTIONS[action])}. The running "
            "service follows the champion alias within its poll interval.</p>"
            f"<form method='post' action='{r.base}/models/act'><input type='hidden' name='target' value='{esc(target)}'>"
            f"<input type='hidden' name='action' value='{esc(action)}'><input type='hidden' name='confirm' value='yes'>"
            f"<button id='confirm'>yes, {esc(action)}</button> <a href='{r.base}/models'>cancel</a></form>")
    return page("Confirm", body, r.base, r.caller.name)


def act(r: Req) -> str:
    """POST /models/act: promote or roll back (only with the confirmation)."""
    from features.store import open_store
    from training.champions import serving_check
    from training.gate import GateError, promote, rollback

    target, action = r.f("target"), r.f("action")
    if r.f("confirm") != "yes" or action not in ACTIONS:
        return models(r, problem="nothing done: the action needs its confirmation")
    ml = r.settings.ml
    check = serving_check(open_store(r.settings), r.settings.features.categories)
    try:
        if action == "promote":
            d = promote(ml, target, check)
            if not d.promoted:
                return models(r, problem=f"the gate refused: {'; '.join(d.reasons)}")
            return models(r, message=f"{ml.model_name(target)} v{d.comparison.challenger.version} is champion")
        old, new = rollback(ml, target, check)
        return models(r, message=f"{new.name} rolled back from v{old.version} to v{new.version}")
    except GateError as e:
        return models(r, problem=str(e))

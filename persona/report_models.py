"""The report's table of champions: every evaluation metric beside every baseline's, and which fit serves."""

from __future__ import annotations

import html

import pandas as pd

from base.config import Settings


def champion_rows(settings: Settings) -> pd.DataFrame:
    """One row per champion and per baseline of its run: the metrics logged on its evaluation window."""
    from training.refit import SERVES_TAG
    from training.registry import alias_version, client
    from training.targets import TARGETS

    ml = settings.ml
    rows = []
    for t in TARGETS:
        ref = alias_version(ml, t.key, ml.champion_alias)
        if ref is None:
            continue
        run = client(ml).get_run(ref.run_id)
        metrics, tags = run.data.metrics, run.data.tags
        names = [m[len("eval_"):] for m in sorted(metrics) if m.startswith("eval_")]
        refit = tags.get(SERVES_TAG) == "refit"
        serves = (f"refit on {len(tags.get('persona.refit_cutoffs', '').split(','))} labelled cutoffs up to "
                  f"{tags.get('persona.refit_newest_label_cutoff', '?')} (the gate judged the evaluated fit)"
                  if refit else "the evaluated fit")
        rows.append({"target": t.key, "version": f"v{ref.version}", "row": "model", "serves": serves,
                     **{n: metrics[f"eval_{n}"] for n in names}})
        bases = sorted({k.split(".")[1] for k in metrics if k.startswith("baseline.")})
        for b in bases:
            rows.append({"target": t.key, "version": f"v{ref.version}", "row": f"baseline {b}", "serves": "",
                         **{n: metrics.get(f"baseline.{b}.{n}", float("nan")) for n in names}})
    return pd.DataFrame(rows)


def champion_table(settings: Settings) -> str:
    """:func:`champion_rows` as an HTML table (one block per target)."""
    frame = champion_rows(settings)
    if frame.empty:
        return "<p>no champions yet (run <code>persona train</code>)</p>"
    cols = [c for c in frame.columns if c not in ("target", "version", "row", "serves")]
    out = []
    for key, part in frame.groupby("target", sort=False):
        used = [c for c in cols if part[c].notna().any()]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *used])
        body = "".join("<tr><td>" + html.escape(str(r["row"])) + "</td>"
                       + "".join(f"<td>{r[c]:.4g}</td>" if pd.notna(r[c]) else "<td>–</td>" for c in used) + "</tr>"
                       for _, r in part.iterrows())
        first = part.iloc[0]
        out.append(f"<h3>{html.escape(str(key))} {first['version']}: serves {html.escape(str(first['serves']))}</h3>"
                   f'<table class="champion-baselines"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "".join(out)

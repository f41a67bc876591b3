"""The brief's "How sure is the diagram?" section and its "measure next" list.

A self-contained function of a run result (``result.structure``: links + robustness tables;
``result.voi``: the value-of-information table; ``result.tornado``). It returns the
blocks as keyword dicts of :class:`veerkracht_bayes.report.brief.Block` (``Block(**d)``; this module
does not import the brief, so the two stay free of an import cycle) and an empty list when the run
computed none of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["structure_section"]


def _block(kind: str, text: str = "", **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "text": text, **kw}


def _f(x: float, d: int = 2) -> str:
    return f"{x:.{d}f}"


def _sd(x: float) -> str:
    """An EVSI/EVPI value in SD: four decimals, or "< 0.0001" below that (not a false 0.0000)."""
    return "< 0.0001" if abs(x) < 5e-5 else _f(x, 4)


def structure_section(result: Any, *, outcome: str = "wellbeing", top: int = 5) -> list[Any]:
    """Blocks of "How sure is the diagram?" (inferred links, rank robustness, what drives the
    uncertainty of the leading effect) and "What to measure next" (ranked EVSI).

    Parameters
    ----------
    result
        A run result (``structure``, ``voi``, ``tornado`` attributes; any may be missing/None).
    outcome
        Outcome for the robustness and tornado sentences.
    top
        Rows per list.

    Returns
    -------
    list of dict
        Keyword arguments of brief blocks (``kind``, ``text``, ``header``, ``rows``, ``items``,
        ``css``, ``ident``); empty when there is nothing to say.

    Examples
    --------
    >>> structure_section(object())
    []
    """
    struct = getattr(result, "structure", None)
    voi = getattr(result, "voi", None)
    tornado = getattr(result, "tornado", None)
    blocks: list[Any] = []
    if struct is not None:
        links, rob = struct.links, struct.robustness
        inf = links[links["inferred"]]
        blocks.append(_block("h2", "How sure is the diagram?", ident="structure"))
        n_inf, n_data = len(inf), int(inf["informed"].sum()) if len(inf) else 0
        blocks.append(_block("p", (
            f"{n_inf} of the diagram's {len(links)} links are our reading of the report's text "
            f"(inferred). Each is given a prior inclusion probability of "
            f"{_f(float(inf['prior_inclusion'].iloc[0])) if n_inf else '-'}; the survey data inform "
            f"{n_data} of them. For the other {n_inf - n_data} the data cannot say whether the link "
            "exists: their inclusion probability stays at the prior.")))
        if n_data:
            rows = inf[inf["informed"]].sort_values("p_include").head(top)
            blocks.append(_block("table", header=["Inferred link", "P(link present)"],
                                 rows=[[r.link, _f(r.p_include)] for r in rows.itertuples()],
                                 css="structure"))
        r = rob[rob["outcome"] == outcome] if len(rob) else rob
        if len(r):
            r = r.dropna(subset=["rank"]).sort_values("rank").head(top)
            blocks.append(_block("p", f"Do the rankings for {outcome} survive? Probability, over "
                                      "the diagram's uncertain links, that each policy keeps its "
                                      "rank and the sign of its effect:"))
            blocks.append(_block("table", header=["Policy", "Rank", "P(rank holds)",
                                                  "P(sign holds)"],
                                 rows=[[x.policy, str(int(x.rank)), _f(x.p_rank_holds),
                                        _f(x.p_sign_holds)] for x in r.itertuples()],
                                 css="robustness"))
    if tornado is not None and len(tornado) and struct is not None:
        t = tornado[tornado["outcome"] == outcome]
        if len(t):
            lead = (struct.robustness.query("outcome == @outcome and rank == 1")["policy"]
                    if len(struct.robustness) else pd.Series(dtype=str))
            pol = lead.iloc[0] if len(lead) else t["policy"].iloc[0]
            tt = t[t["policy"] == pol].head(3)
            items = [f"{x.input}: {100 * x.share:.0f}% of the effect's (linearised) variance"
                     for x in tt.itertuples()]
            blocks.append(_block("p", f"What makes the effect of {pol} on {outcome} uncertain "
                                      "(largest contributions):"))
            blocks.append(_block("ul", items=items, css="tornado"))
    if voi is not None and len(voi):
        nmax = int(voi["n"].max())
        v_all = voi[voi["n"] == nmax]
        unknown = (v_all[v_all["status"] == "not_estimable"] if "status" in v_all
                   else v_all.iloc[:0])
        v = v_all.drop(index=unknown.index).sort_values("evsi", ascending=False)
        evpi0 = float(voi["evpi"].iloc[0])
        # worth listing: at least 1 % of the EVPI (smaller values cannot change the decision)
        v = v[v["evsi"] >= 0.01 * evpi0].head(top) if evpi0 > 0 else v.iloc[:0]
        blocks.append(_block("h2", "What to measure next", ident="measure-next"))
        evpi = float(voi["evpi"].iloc[0])
        blocks.append(_block("p", (
            f"Value of information for choosing the policy with the best expected effect on "
            f"{voi['outcome'].iloc[0]}: perfect knowledge would be worth {_f(evpi, 3)} SD (EVPI). "
            + (f"Measuring one more construct in a wave of {nmax} respondents is worth (EVSI, SD):"
               if len(v) else f"For a wave of {nmax} respondents:"))))
        if len(v):
            if "status" in v:
                rough = (v["status"] == "rough").to_numpy()
            else:
                rough = v["share_k_bad"].fillna(0.0).to_numpy() > 0.5 if "share_k_bad" in v \
                    else np.zeros(len(v), bool)
            se = v["evsi_se"].to_numpy() if "evsi_se" in v else np.full(len(v), np.nan)
            blocks.append(_block("ul", items=[
                f"{x.construct}: {_sd(x.evsi)}"
                + (f" (± {_sd(e)})" if np.isfinite(e) else "") + (" — rough" if r else "")
                for x, e, r in zip(v.itertuples(), se, rough)], css="measure-next"))
            if rough.any():
                blocks.append(_block("p", (
                    "Rough: for most simulated waves the posterior after the wave is much narrower "
                    "than the posterior sample can represent (importance weights degenerate), so "
                    "the value leans high; a refit per wave (voi max_refits) or more posterior "
                    "draws would sharpen it.")))
        else:
            blocks.append(_block("p", "No single construct, measured next, is expected to change "
                                      "the decision" + (" (none whose value can be estimated reaches "
                                                        "1 % of the EVPI)." if len(unknown) else ".")))
        if len(unknown):
            gau = ""
            if "evsi_gaussian" in unknown:
                g = unknown["evsi_gaussian"].to_numpy(float)
                gau = ("below 0.0001 SD for every one of them" if np.all(np.abs(g[np.isfinite(g)]) < 5e-5)
                       else ", ".join(f"{x.construct} {_sd(x.evsi_gaussian)}" for x in unknown.itertuples()))
            blocks.append(_block("p", (
                f"Not estimable at n = {nmax} with these posterior draws: "
                f"{', '.join(unknown['construct'])}. For most simulated waves the posterior after "
                "the wave is far narrower than the posterior sample can represent, and the "
                "estimate cannot be told from the value the same importance weights give when the "
                "wave carries no information. "
                + (f"The Gaussian approximation (informed links only) gives {gau}"
                   + ("" if gau.endswith("of them") else " SD") + ". " if gau
                   else "")
                + "A refit per wave (voi max_refits) or more posterior draws would settle it.")))
        gmax = (float(np.nanmax(v_all["evsi_gaussian"].to_numpy(float)))
                if "evsi_gaussian" in v_all and v_all["evsi_gaussian"].notna().any() else np.nan)
        if np.isfinite(gmax) and evpi > 0 and gmax < 0.01 * evpi:
            blocks.append(_block("p", (
                f"No candidate's Gaussian EVSI reaches 1 % of the EVPI (largest {_sd(gmax)} SD): "
                "measuring these constructs would hardly change the decision. The value of "
                "information lies elsewhere, for instance in the policy levers' effects, which rest "
                "on evaluation literature and assumptions that no survey wave measures.")))
    return blocks

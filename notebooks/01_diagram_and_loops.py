# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The MARVEL diagram and its feedback loops
#
# TNO's MARVEL model (report 2023 R10055, *Metaonderzoek veerkracht*) is a **signed, cyclic**
# causal diagram: 37 factors that drive resilience, joined by links with a direction, a
# polarity (+/−), a delay class, and a resource type per node (individual = red,
# societal = blue, organisational = grey). The report's full diagram is an image; the edge
# list shipped as `veerkracht_bayes/data/marvel.yaml` is reconstructed from the report's text,
# and links that are *our reading* rather than a sentence of the report are flagged
# `inferred` (dashed in the drawings).
#
# This notebook only looks at the diagram — no data, no priors, no sampling:
#
# 1. load it and show it (rich HTML display, drawing with highlighted loops);
# 2. enumerate **all simple cycles** with their polarity (R = reinforcing, even number of
#    negative links; B = balancing, odd number);
# 3. check the report's six **named loops** against the edge list;
# 4. look at sub-views per resource type;
# 5. write the diagram as **lavaan model syntax** and read it back (round trip).
#
# **Matrix convention used everywhere in the package:** nodes are ordered as in the YAML
# file, and `B[k, j]` is the coefficient of the edge `j -> k` (row = target, column = source),
# so that the structural equation reads `eta = B eta + ...`.

# %%
# %matplotlib inline
import os

# One BLAS/OpenMP thread: reproducible timings on small machines, no oversubscription.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

FAST = os.environ.get("VEERKRACHT_FAST", "0") == "1"  # this notebook samples nothing
SEED = 2023

import numpy as np
import pandas as pd

from veerkracht_bayes.graph import load_graph
from veerkracht_bayes.graph import dot_available
from veerkracht_bayes.graph import graph_from_lavaan
from veerkracht_bayes.graph import graph_to_lavaan

pd.set_option("display.max_colwidth", 120)

# %% [markdown]
# ## 1. Load the diagram
#
# `load_graph("marvel")` validates the shipped YAML (unknown nodes, duplicate edges, bad signs
# are errors that name the file and line). A `CausalGraph` displays itself as HTML in Jupyter.

# %%
graph = load_graph("marvel")
graph

# %%
info = graph.info()
pd.Series({k: v for k, v in info.items() if k.startswith("n_")}, name="MARVEL").to_frame()

# %% [markdown]
# The nodes, with their resource type and role. Roles: `construct` (a quantity in the
# system), `exogenous` (a cause from outside the system, e.g. adverse life events) and
# `policy_lever` (something a policy can move directly; most levers are not measured in a
# survey, so their effects rest on priors).

# %%
nodes = pd.DataFrame(info["nodes"]).set_index("id")
nodes.groupby(["resource", "role"]).size().rename("n_nodes").to_frame()

# %%
edges = pd.DataFrame(info["edges"])
print(f"{len(edges)} links: {int((edges.sign == '+').sum())} positive, "
      f"{int((edges.sign == '-').sum())} negative, {int(edges.inferred.sum())} inferred")
edges.groupby(["delay", "sign"]).size().unstack(fill_value=0)

# %% [markdown]
# ## 2. Drawing, with named loops highlighted
#
# Graphviz is used when its `dot` program is installed, a matplotlib layout otherwise (the
# picture carries the same information: colours by resource type, `+`/`−` on each link,
# dashed inferred links, policy levers as hexagons). Highlighted loops are drawn thick in the
# loop's colour.

# %%
print("graphviz 'dot' available:", dot_available())
graph.draw(highlight_loops=["L1", "L3"])

# %% [markdown]
# ## 3. All simple cycles, with polarity
#
# Johnson's algorithm (via networkx) enumerates every elementary directed cycle. A cycle is
# reinforcing (R) when the product of its signs is positive. In a linear structural model the
# **gain** of a cycle is the product of its coefficients; the system is stable (a disturbance
# dies out instead of exploding) when the spectral radius of `B` is below 1 — notebook 02 shows
# what the priors say about that.

# %%
cycles = graph.simple_cycles()
cycle_table = pd.DataFrame({
    "length": [c.length for c in cycles],
    "polarity": [c.polarity for c in cycles],
    "cycle": [" → ".join(c.nodes + (c.nodes[0],)) for c in cycles],
    "signs": ["".join(c.signs) for c in cycles],
})
print(cycle_table.polarity.value_counts().to_dict())
cycle_table

# %% [markdown]
# The named loops of the report are a subset of these cycles. Every named loop should be
# found as a directed cycle, with the polarity the report states.

# %%
checks = graph.check_loops()
check_table = pd.DataFrame([{"id": c.id, "title": c.title, "stated": c.stated_polarity,
                             "from signs": c.polarity, "found": c.found, "ok": c.ok,
                             "message": c.message} for c in checks])
check_table

# %%
assert all(c.ok for c in checks), "a named loop does not match the edge list"
named = {frozenset(graph.loop_edge_keys(c.id)) for c in checks}
in_cycles = sum(frozenset(c.edge_keys()) in named for c in cycles)
print("named loops found among the simple cycles:", in_cycles, "of", len(checks))
assert in_cycles == len(checks)

# %% [markdown]
# Cycles that are **not** named loops come from the links the report describes in its system
# analysis (and from our inferred links). They matter for the model just as much: every cycle
# multiplies a policy's effect (notebook 04, loop amplification).

# %%
unnamed = [c for c in cycles if frozenset(c.edge_keys()) not in named]
pd.DataFrame({"cycle": [" → ".join(c.nodes) for c in unnamed],
              "polarity": [c.polarity for c in unnamed]})

# %% [markdown]
# ## 4. Signed adjacency matrix
#
# `signed_adjacency()` returns `S` with `S[k, j] = ±1` for the edge `j -> k` — the sign
# pattern of `B`. Row sums of `|S|` are in-degrees (number of direct causes).

# %%
S = graph.signed_adjacency()
in_degree = pd.Series(np.abs(S).sum(axis=1), index=graph.nodes, name="in_degree")
out_degree = pd.Series(np.abs(S).sum(axis=0), index=graph.nodes, name="out_degree")
pd.concat([in_degree, out_degree], axis=1).sort_values("in_degree", ascending=False).head(10)

# %%
# The convention, checked on one link: stress -> wellbeing is negative.
k, j = graph.node_index["wellbeing"], graph.node_index["stress"]
assert S[k, j] == -1 and graph.edge("stress", "wellbeing").sign == "-"

# %% [markdown]
# ## 5. Sub-views per resource type
#
# `graph.view(resource=...)` is the induced sub-diagram on the nodes of one resource type
# (named loops are kept when all their nodes are inside). Useful to discuss one part of the
# system with the people who own it (a municipality's organisational levers, say).

# %%
for resource in ("individual", "societal", "organisational"):
    sub = graph.view(resource=resource)
    n_cyc = len(sub.simple_cycles())
    print(f"{resource:15s} {len(sub.nodes):3d} nodes {len(sub.edges):3d} links "
          f"{n_cyc:3d} cycles  named loops: {[lp.id for lp in sub.spec.loops]}")

# %%
graph.view(resource="societal").draw()

# %% [markdown]
# Policy levers and what they act on directly:

# %%
levers = graph.nodes_where(role="policy_lever")
pd.DataFrame({"lever": levers,
              "acts on": [", ".join(f"{c} ({graph.edge(l, c).sign})" for c in graph.children(l))
                          for l in levers]})

# %% [markdown]
# ## 6. lavaan round trip
#
# Many statisticians write structural models in lavaan syntax (R). The package writes the
# diagram as lavaan syntax — one regression line per target, each coefficient labelled
# `b_<source>__<target>`, the sign as an inequality constraint — and reads such syntax back
# into a `CausalGraph` (notebook 05 uses that to write your own diagram).

# %%
lav = graph_to_lavaan(graph)
print("\n".join(lav.splitlines()[:24]), "\n...")

# %%
back = graph_from_lavaan(lav, name="marvel_roundtrip")
same = (sorted((e.source, e.target, e.sign) for e in graph.edges)
        == sorted((e.source, e.target, e.sign) for e in back.edges))
print(back, "| same nodes:", set(back.nodes) == set(graph.nodes), "| same signed links:", same)
assert same and set(back.nodes) == set(graph.nodes)

# %% [markdown]
# lavaan syntax carries no resource types, delays, labels, inferred-flags or named loops: the
# round trip keeps the signed structure, and the YAML stays the reference format for
# everything else.

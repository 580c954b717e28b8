"""Timeline PNG of one chaos scenario (matplotlib, Agg): acknowledged throughput, every query
probe's status, reachable copies per acknowledged record; the fault window shaded."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def timeline(r, path):
    tl, ev = r["timeline"], r["events"]
    end = ev.get("settled", ev.get("writers_done", 0))
    per_store = "per_store_end" in r  # a store lost or joining: how many records each store holds
    axes = plt.subplots(4 if per_store else 3, 1, figsize=(10, 10 if per_store else 8), sharex=True)[1]
    fig = axes[0].figure
    a1, a2, a3 = axes[:3]
    fig.suptitle("%s: %s" % (r["scenario"], r["desc"]), fontsize=10)

    # Acknowledged records per second, by the second their chunk's forward exited 0.
    buckets = {}
    for _w, count, _t0, t1, rc in tl["chunks"]:
        if rc == 0 and t1 is not None:
            buckets[int(t1)] = buckets.get(int(t1), 0) + count
    xs = list(range(0, int(end) + 1))
    a1.bar(xs, [buckets.get(x, 0) for x in xs], width=1.0, align="edge", color="tab:blue")
    failed = [t1 for _w, _c, _t0, t1, rc in tl["chunks"] if rc != 0 and t1 is not None]
    if failed:
        a1.plot(failed, [0] * len(failed), "rx", label="chunk not acknowledged")
        a1.legend(loc="upper right", fontsize=8)
    a1.set_ylabel("acked records/s")

    nodes = sorted({p[2] for p in tl["probes"]})
    colors = {200: "green", 206: "orange"}
    for t0, t1, node, status, error, _records, missing in tl["probes"]:
        c = "red" if error or status not in colors else colors[status]
        if status == 200 and not error and missing:
            c = "black"  # a 200 missing an acknowledged record: a failure
        t1 = t0 + 0.25 if t1 is None else max(t1, t0 + 0.25)  # a fast answer still shows
        a2.plot([t0, t1], [nodes.index(node)] * 2, "-", color=c, linewidth=6, solid_capstyle="butt")
    a2.set_yticks(range(len(nodes)))
    a2.set_yticklabels(nodes)
    a2.set_ylabel("query on node")
    a2.set_title("200 green, 206 orange, error red, 200 with records missing black", fontsize=8)

    cp = tl["copies"]
    if cp:
        t = [s[0] for s in cp]
        a3.plot(t, [s[1] - s[2] for s in cp], "-", color="tab:green", label=">= 2 copies")
        a3.plot(t, [s[2] - s[3] for s in cp], "-", color="tab:orange", label="1 copy")
        a3.plot(t, [s[3] for s in cp], "-", color="tab:red", label="0 reachable copies")
        a3.legend(loc="upper left", fontsize=8)
    a3.set_ylabel("acked records")
    axes[-1].set_xlabel("seconds since the cluster was up")

    if per_store:
        a4 = axes[3]
        names = sorted({n for s in cp for n in (s[6] if len(s) > 6 else {})})
        for n in names:
            pts = [(s[0], s[6][n]) for s in cp if len(s) > 6 and n in s[6]]
            a4.plot([p[0] for p in pts], [p[1] for p in pts], "-", label=n)
        a4.legend(loc="upper left", fontsize=8)
        a4.set_ylabel("acked records held")
        a4.set_title("records held per store (each within 20 % of the mean at the end)", fontsize=8)
    for ax in axes:
        ax.axvspan(ev["fault"], ev["heal"], color="grey", alpha=0.25)
        ax.axvline(ev["writers_stop"], color="grey", linestyle=":")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

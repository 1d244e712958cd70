"""What the chat benchmarks' pages (infra/bench-chat.sh, infra/bench-chat-wan.sh) read from each
run's `starling-load` report, and the cells both pages write from it. Imported by each script's
inline Python (`sys.path` gets infra/); only the standard library.
"""

import json


def delivery(path, group_size):
    """The counts of one run's report at `path` (a conversation of `group_size` members): sent,
    acked, delivered against expected (sent × the other members), missing, duplicates, the
    delivered share in %, and the error kinds of every operation; with `report`, the whole
    report."""
    with open(path) as f:
        r = json.load(f)
    c = r["chat"]
    want = c["sent"] * (group_size - 1)
    return dict(
        report=r,
        sent=c["sent"],
        acked=c["acked"],
        delivered=c["delivered"],
        want=want,
        missing=c["missing"],
        dup=c["duplicates"],
        pct=100.0 * c["delivered"] / want if want else 0.0,
        errors={k: v for o in r["ops"].values() for k, v in o.get("error_kinds", {}).items()},
    )


def scenario(group_size):
    """A run's scenario as the pages name it."""
    return "1:1" if group_size == 2 else f"groups of {group_size}"


def num(v, digits=2):
    """A figure with thousands separators, or – when there is none."""
    return "–" if v is None else f"{v:,.{digits}f}"


def counts_cells(x):
    """The "Every run" cells from the load average before it to its errors, less what a page puts
    between its duplicates and its errors (`x` from [`delivery`] with `load`)."""
    load = " / ".join(f"{v:.2f}" for v in x["load"])
    return (
        f"{load} | {x['sent']:,} | {x['acked']:,} | {x['delivered']:,} / {x['want']:,} | "
        f"{x['missing']:,} | {x['dup']:,}"
    )


def errors_cell(x):
    """The run's error kinds as `kind=count`, or 0."""
    return " ".join(f"{k}={v}" for k, v in sorted(x["errors"].items())) or "0"

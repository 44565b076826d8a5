"""One self-contained HTML page for a report: plotly.js inlined once, every figure and table inline.

Nothing on the page is fetched from the network, so it opens offline and can be mailed around.
"""

from __future__ import annotations

import html
import json
import math

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f5f5f5; } td.text { text-align: left; }
.meta td, .meta th { text-align: left; }
.summary { background: #f7f9fc; border-left: 4px solid #4C78A8; padding: .6em 1em; }
.scroll { max-height: 24em; overflow: auto; }
nav li { display: inline; margin-right: 1em; }
"""


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def table(frame, caption: str = "") -> str:
    """A pandas DataFrame as an HTML table (numbers to 4 significant digits, text escaped)."""
    import pandas as pd

    if frame.index.name is not None or not isinstance(frame.index, pd.RangeIndex):  # a real index: a column
        frame = frame.reset_index()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f'<td class="{"text" if isinstance(v, str) else "num"}">{_cell(v)}</td>' for v in row)
        + "</tr>" for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def figure(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def page(title: str, meta: dict, sections) -> str:
    """The whole report page: a header with the run's provenance, then one block per section."""
    from plotly.offline import get_plotlyjs

    meta_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v if isinstance(v, str) else json.dumps(v))}"
                        "</td></tr>" for k, v in meta.items())
    nav = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    blocks = []
    for s in sections:
        parts = [f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>',
                 f'<p class="summary">{html.escape(s.summary)}</p>']
        parts += [figure(f) for f in s.figures]
        parts += [table(frame, caption) for caption, frame in s.tables]
        blocks.append("".join(parts) + "</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><table class=\"meta\">{meta_rows}</table><nav><ul>{nav}</ul></nav>"
        + "".join(blocks) + "</body></html>\n"
    )

"""Self-contained HTML pages: inline CSS and JavaScript, no external resources, all text escaped."""

from __future__ import annotations

import html as _html
from typing import Any

BASE_CSS = """
:root { --hit: #1a7f37; --miss: #cf222e; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { font-size: 1.2em; margin: 1.4em 0 .4em; }
.muted { color: var(--muted); }
.warn { background: #fff8c5; border: 1px solid #d4a72c; padding: .5em .8em; border-radius: 6px; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid var(--line); padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
code { font-size: .92em; }
"""

SORT_JS = """
(function () {
  function key(cell) {
    if (!cell) return null;
    var v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent.trim();
    if (v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = th.getAttribute('aria-sort') === 'descending' ? 'ascending' : 'descending';
    var ths = table.tHead.rows[0].cells;
    for (var i = 0; i < ths.length; i++) ths[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1;
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.title = th.title || 'click to sort';
      th.addEventListener('click', function () { sortBy(table, th, index); });
    });
  });
})();
"""


def esc(value: Any) -> str:
    """Escape any value for HTML text and attribute values (quotes included)."""
    return _html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, css: str = "", js: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SORT_JS}{js}</script>\n</body>\n</html>\n"
    )

"""Page assembly: the HTML document around the sections, its style sheet, and the self-check script a
headless browser test reads."""

from __future__ import annotations

import html

from parcae_runner.analysis.report.markup import Section

# A self-check for headless browsers only: the page needs no JavaScript. It records uncaught errors and
# resources that failed to load (capture phase: an <img> error does not bubble) and, after the load event,
# whether every image decoded, as data-* attributes on <body> that `chromium --dump-dom` shows.
SELF_CHECK_JS = """(function () {
  var errors = [];
  function save() { if (document.body) { document.body.dataset.errors = JSON.stringify(errors); } }
  window.addEventListener("error", function (e) {
    var t = e.target;
    var what = t && t !== window && t.tagName;
    errors.push(what ? "failed to load " + what + " " + (t.getAttribute("src") || t.getAttribute("href"))
                     : String(e.message));
    save();
  }, true);
  window.addEventListener("load", function () {
    var bad = Array.prototype.filter.call(document.images, function (i) {
      return !(i.complete && i.naturalWidth > 0);
    });
    document.body.dataset.imagesTotal = String(document.images.length);
    document.body.dataset.imagesBad = JSON.stringify(bad.map(function (i) { return i.getAttribute("src"); }));
    document.body.dataset.imagesOk = bad.length === 0 ? "true" : "false";
    save();
  });
})();"""

CSS = """body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.caption { color: #555; font-size: 0.9em; max-width: 60em; } img { display: block; max-width: 100%; height: auto; }
nav ul { columns: 2; } code { background: #f3f3f3; padding: 0 0.2em; }"""


def render_html(title: str, sections: list[Section]) -> str:
    """The page: title, a table of contents, then the sections."""
    nav = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t, _ in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script>{SELF_CHECK_JS}</script></head>\n<body>"
        f"<h1>{html.escape(title)}</h1><nav><ul>{nav}</ul></nav>\n"
        + "\n".join(s for _, _, s in sections)
        + "\n</body></html>\n"
    )

"""Sphinx extension: small fixes so every page loads without console errors.

Jupyter Book 1.x registers sphinx-thebe's inline configuration script twice, which makes the
browser report ``Identifier 'THEBE_JS_URL' has already been declared`` on every page. Here
each page's script list is de-duplicated before it is written.
"""


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # inline scripts are registered with filename None or '' (same body): key on the body
        body = getattr(script, "attributes", {}).get("body")
        key = ("inline", body) if body else ("file", str(script))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True}

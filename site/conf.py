"""Sphinx settings of the course website (``make site``; ``tools/build_site.py`` stages the sources).

Everything a page needs is copied beside it: the theme's fonts and icons come with the theme, MathJax with the
``sphinx-mathjax-offline`` package, code is highlighted by Pygments at build time. The notebooks are executed
before Sphinx runs (``nb_execution_mode = "off"``), so the build never starts a kernel.
"""

project = "Neural-network pruning, hands-on"
author = "the course's authors"
copyright = "the course's authors"

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # the package's folder name has hyphens; Sphinx imports it so
root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints"]

nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget scripts from a CDN: the build replaces each widget by its first figure
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3  # "00_setup_data_and_cost.ipynb#glossary" resolves to the Glossary heading
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "Neural-network pruning, hands-on"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_js_files = ["course.js"]
html_theme_options = {
    "use_download_button": False,  # it would offer the staged sources, which the site does not publish
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_copy_source = False

"""End-to-end check of the browser-test infrastructure (tests/browser.py): a real headless
Chromium runs a notebook in a real JupyterLab through its menus, and opens the same notebook
in Voila. The ipywidgets Button must render as a widget (not as its text repr) in both, which
shows the widgets lab extension and Voila's widget manager are active."""

# The fixtures imported from browser are named again as test arguments:
# ruff: noqa: F811
from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import UI_TIMEOUT_MS, chromium_page, jupyter_lab, run_all_cells, screenshot, voila_app, write_notebook  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    'import ipywidgets\nipywidgets.Button(description="hello-widget")',
    "print(6 * 7)",
]


def _expect():
    from playwright.sync_api import expect

    return expect


def _widget_button(page):
    """The Button rendered by the widget manager (ipywidgets 8 draws it as
    <button class="jupyter-button widget-button">), inside a notebook output."""
    return page.locator("button.widget-button").filter(has_text="hello-widget")


def test_jupyterlab_runs_notebook_and_renders_widget(jupyter_lab, chromium_page, screenshot) -> None:
    expect = _expect()
    page = chromium_page
    write_notebook(jupyter_lab.root_dir / "smoke.ipynb", CELLS)

    page.goto(jupyter_lab.url("lab/tree/smoke.ipynb"))
    notebook = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-Cell"))
    expect(notebook.locator(".jp-Cell")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    # the kernel is up once the toolbar's kernel status shows idle
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=UI_TIMEOUT_MS)

    run_all_cells(page, notebook)

    printed = notebook.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"^\s*42\s*$"))
    expect(printed).to_be_visible(timeout=UI_TIMEOUT_MS)
    button = notebook.locator(".jp-OutputArea-output").locator(_widget_button(page))
    expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(button).to_have_text("hello-widget")
    # both cells ran: each prompt shows an execution count
    expect(notebook.locator(".jp-InputArea-prompt").filter(has_text=re.compile(r"\[\d+\]"))).to_have_count(2)

    path = screenshot(page, "lab")
    assert path.is_file() and path.stat().st_size > 0


def test_voila_renders_widget(voila_app, chromium_page, screenshot, tmp_path: Path) -> None:
    expect = _expect()
    page = chromium_page
    notebook = write_notebook(tmp_path / "voila-nb" / "smoke.ipynb", CELLS)
    server = voila_app(notebook)

    page.goto(server.url())
    button = _widget_button(page)
    expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(button).to_have_text("hello-widget")
    expect(page.get_by_text(re.compile(r"^\s*42\s*$"))).to_be_visible(timeout=UI_TIMEOUT_MS)

    path = screenshot(page, "voila")
    assert path.is_file() and path.stat().st_size > 0

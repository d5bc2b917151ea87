"""The layers hold: `python -m fastserve._layers` finds no import up a layer, no circle, no asyncio in the core
beyond the known list, and it does find each of those in a package that has them."""

import subprocess
import sys

from fastserve import _layers


def test_the_package_crosses_no_layer_beyond_the_known_ones():
    done = subprocess.run([sys.executable, "-m", "fastserve._layers"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(_layers.KNOWN)} crossing(s), 0 not known" in done.stdout


def write(root, name, text):
    path = root.joinpath(*name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_an_import_up_a_layer_a_circle_and_asyncio_in_the_core_are_found(tmp_path, monkeypatch):
    write(tmp_path, "__init__.py", "")
    write(tmp_path, "registry/__init__.py", "")
    write(tmp_path, "registry/models.py", "from fastserve.http.app import App\n")  # up: http is above
    write(tmp_path, "http/__init__.py", "")
    write(tmp_path, "http/app.py", "from . import codecs\n")
    write(tmp_path, "http/codecs.py", "from fastserve.http import app\n")  # a circle, by a relative import
    write(tmp_path, "export/__init__.py", "from fastserve.http.codecs import x\n")  # across, same layer
    write(tmp_path, "_core/__init__.py", "")
    write(tmp_path, "_core/rows.pyx", "import asyncio\nfrom fastserve.exceptions import E\n")
    write(tmp_path, "exceptions.py", "")
    write(tmp_path, "config.py", "import fastserve.registry.models\n")  # up, as `import a.b`
    monkeypatch.setattr(_layers, "ROOT", tmp_path)
    assert _layers.crossings() == [
        "config -> registry.models",
        "export -> http.codecs",
        "registry.models -> http.app",
        "circle: http.app, http.codecs",
        "_core.rows imports asyncio",
    ]
    assert _layers.main() == 1

"""The Cannon's test step, per spectrum: astra's `cannon` against the reference package
the-cannon 0.2.6 on the same normalised spectra and the same training set, and astra's chunk of
B spectra against one spectrum at a time. CPU time, one BLAS thread each, same machine, same run.

    python bench/bench_cannon.py [--test 256] [--train 300] [--reference-venv DIR]

The data are the demo's (apStar files at 8,575 pixels, S/N 100, 3 labels), normalised by
astra's per-chip continuum. the-cannon is installed in a throwaway virtualenv (it needs
numpy < 2, and a one-line patch: it imports `Iterable` from `collections`); where that cannot be
done the reference is skipped with a message. Both models are trained on the same arrays.

Prints figures; asserts nothing (the machine is shared and timings are noisy).
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads, so that neither contender uses both cores.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from astra_cli.demo.dataset import DemoConfig, write_demo  # noqa: E402
from astra_cli.demo.report import STAR_KEYS  # noqa: E402
from astra_cli.io.identifiers import IdentifierResolver  # noqa: E402
from astra_cli.io.spectra import read_spectrum  # noqa: E402
from astra_cli.science import cannon  # noqa: E402
from astra_cli.science.continuum import normalise  # noqa: E402

LABELS = ("teff", "logg", "m_h")
REFERENCE = "the-cannon==0.2.6"

REFERENCE_SCRIPT = """
import json, sys, time
import numpy as np
import thecannon as tc
from astropy.table import Table

data = np.load(sys.argv[1])
names = [str(name) for name in data["label_names"]]
labels = Table(data["train_labels"], names=names)
vectorizer = tc.vectorizer.PolynomialVectorizer(names, 2)
model = tc.CannonModel(
    labels, data["train_flux"], data["train_ivar"], vectorizer=vectorizer,
    dispersion=data["wavelength"],
)
model.train(threads=1)
started = time.process_time()
fitted, _, _ = model.test(data["test_flux"], data["test_ivar"], threads=1)
seconds = time.process_time() - started
np.save(sys.argv[2], np.asarray(fitted))
print(json.dumps({"seconds": seconds, "spectra": len(fitted)}))
"""


def normalised(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spectra = [read_spectrum(path) for path in paths]
    wavelength = spectra[0].wavelength
    flux = np.stack([spectrum.flux for spectrum in spectra])
    ivar = np.stack([np.where(spectrum.bad, 0.0, spectrum.ivar) for spectrum in spectra])
    flux, ivar = normalise(wavelength, flux, ivar, order=4)
    return wavelength, flux, ivar


def reference_python(venv: Path) -> Path | None:
    """the-cannon's interpreter, installing it on first use; None (and why) if it cannot be."""
    python = venv / "bin" / "python"
    if python.exists() and _imports(python):
        return python
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "numpy<2", "scipy", "astropy", REFERENCE],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"reference skipped: {' '.join(step[:4])} failed: {done.stderr.strip()[-300:]}")
            return None
    found = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('thecannon').origin)"],
        capture_output=True,
        text=True,
    )
    utils = Path(found.stdout.strip()).parent / "utils.py"
    text = utils.read_text()
    utils.write_text(
        text.replace("from collections import Iterable", "from collections.abc import Iterable")
    )
    if not _imports(python):
        print(f"reference skipped: {REFERENCE} does not import even after the patch")
        return None
    return python


def _imports(python: Path) -> bool:
    return (
        subprocess.run([str(python), "-c", "import thecannon"], capture_output=True).returncode == 0
    )


def cpu_per_spectrum(model: cannon.CannonModel, flux: np.ndarray, ivar: np.ndarray, batch: int):
    """CPU ms per spectrum, and the labels, fitting `batch` spectra per call."""
    started = time.process_time()
    fitted = []
    for start in range(0, len(flux), batch):
        fitted += cannon.fit(model, flux[start : start + batch], ivar[start : start + batch])
    seconds = time.process_time() - started
    labels = np.array([[row[name] for name in LABELS] for row in fitted])
    return 1000 * seconds / len(flux), labels


def rms(difference: np.ndarray) -> str:
    values = np.sqrt(np.mean(difference**2, axis=0))
    return f"{values[0]:.2f} K, {values[1]:.4f} dex, {values[2]:.4f} dex"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", type=int, default=256, help="test spectra")
    parser.add_argument("--train", type=int, default=300, help="training spectra")
    parser.add_argument(
        "--reference-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "astra-bench-the-cannon",
        help="virtualenv for the-cannon 0.2.6 (made on first use)",
    )
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        print(f"writing the demo: {arguments.test} test and {arguments.train} training stars")
        files = write_demo(
            Path(scratch), DemoConfig(n_stars=arguments.test, n_train=arguments.train)
        )
        with open(files.training_manifest, newline="") as handle:
            rows = list(csv.DictReader(handle))
        training = [row["path"] for row in rows]
        train_labels = np.array([[float(row[name]) for name in LABELS] for row in rows])
        resolver = IdentifierResolver(files.data_root)
        test_paths = [
            resolver.resolve({key: row[key] for key in STAR_KEYS}).path for row in files.stars
        ]
        truth = np.array([[row[name] for name in LABELS] for row in files.stars])
        wavelength, train_flux, train_ivar = normalised(training)
        _, test_flux, test_ivar = normalised(test_paths)

        model = cannon.train(
            train_labels, train_flux, train_ivar, label_names=LABELS, wavelength=wavelength,
            continuum_order=4,
        )  # fmt: skip
        single, alone = cpu_per_spectrum(model, test_flux, test_ivar, 1)
        batched, together = cpu_per_spectrum(model, test_flux, test_ivar, arguments.test)
        print(f"astra, one spectrum per call:   {single:.2f} ms CPU per spectrum")
        print(f"astra, {arguments.test} spectra per call: {batched:.2f} ms CPU per spectrum")
        print(f"astra - truth rms: {rms(together - truth)}")
        print(f"astra batch - astra single, largest: {np.abs(together - alone).max(axis=0)}")

        python = reference_python(arguments.reference_venv)
        if python is None:
            return
        arrays = Path(scratch) / "arrays.npz"
        np.savez(
            arrays, label_names=np.array(LABELS), train_labels=train_labels, wavelength=wavelength,
            train_flux=train_flux, train_ivar=train_ivar, test_flux=test_flux, test_ivar=test_ivar,
        )  # fmt: skip
        answers = Path(scratch) / "reference.npy"
        done = subprocess.run(
            [str(python), "-c", REFERENCE_SCRIPT, str(arrays), str(answers)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"reference failed: {done.stderr.strip()[-500:]}")
            return
        timing = json.loads(done.stdout.strip().splitlines()[-1])
        reference = np.load(answers)
        per_spectrum = 1000 * timing["seconds"] / timing["spectra"]
        print(f"{REFERENCE}:             {per_spectrum:.2f} ms CPU per spectrum")
        print(f"the-cannon - truth rms: {rms(reference - truth)}")
        print(f"astra - the-cannon rms: {rms(together - reference)}")
        print(
            f"astra / the-cannon time: {single / per_spectrum:.2f} one at a time, "
            f"{batched / per_spectrum:.2f} in a chunk of {arguments.test}"
        )


if __name__ == "__main__":
    main()

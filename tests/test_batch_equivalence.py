"""A chunk analysed as one batch gives what its spectra give one at a time: vectorising across
the chunk is an optimisation, never a change of answer."""

from __future__ import annotations

import pytest
from demo_paths import star_paths

from astra_cli.io.spectra import read_spectrum
from astra_cli.methods.cannon import Cannon
from astra_cli.methods.grid import Grid


@pytest.mark.parametrize(
    ("method_class", "option", "model_file"),
    [(Grid, "grid", "grid_fits"), (Cannon, "model", "cannon_model")],
)
def test_a_batch_gives_what_one_spectrum_at_a_time_gives(
    demo_files, method_class, option, model_file
):
    method = method_class(**{option: getattr(demo_files, model_file)})
    model = method.load_model()
    spectra = [read_spectrum(path) for path in star_paths(demo_files)[:5]]

    batch = method.analyse_batch(model, spectra)
    single = [method.analyse_batch(model, [spectrum])[0] for spectrum in spectra]

    assert len(batch) == 5
    for together, alone in zip(batch, single, strict=True):
        assert together.keys() == alone.keys()
        for column, value in together.items():
            assert value == pytest.approx(alone[column], rel=1e-6), column
    assert len({round(result["teff"]) for result in batch}) == 5, "five different stars"

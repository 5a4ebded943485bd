"""The built-in demo: synthetic spectra shaped like APOGEE's, with known labels and velocities,
the models the science methods need, and a run that compares what they recover with the truth."""

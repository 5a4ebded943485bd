"""The numerical core of the science methods, in numpy: wavelength grids, continuum
normalisation, model grids and their fitting, The Cannon, and cross-correlation. Nothing here
knows about files named by users, workers or the command line."""

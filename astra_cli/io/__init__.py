"""Everything astra reads and writes: identifiers and manifests (what to analyse), spectra,
model files, the results store and exported tables. No planning, no execution."""

"""Figures of what the store holds: a fit over its spectrum, a catalogue's labels. matplotlib is
an optional extra (`pip install 'astra-cli[plot]'`), imported only here, and only through its
object-oriented `Figure` (no pyplot: no GUI backend, no global state between figures)."""

"""The batch engine: requests -> plan -> execution on a backend -> the store.

`requests` expands what was asked into request sets, `planner` groups and chunks them against
the store, `runner` runs a plan group by group under locks, `pool` hands chunks to a backend's
workers and `worker` analyses them there; `journal`, `locks`, `backends` and `progress` serve
them. Nothing here knows the command line.
"""

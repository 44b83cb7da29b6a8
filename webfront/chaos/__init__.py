"""Fault injection with a consistency checker, in the manner of Jepsen.

`python -m webfront.chaos --duration 60 --seed 1 --out DIR` starts a real local cluster, drives
it through the HTTP API (`workload`), injects faults chosen from the seed (`nemesis`), records
every operation (`history`), reads the final state of every replica (`state`) and checks it all
(`checker`). See `run.py` for the command line.
"""

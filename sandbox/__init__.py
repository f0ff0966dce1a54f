# SPDX-License-Identifier: GPL-2.0-or-later
"""Reusable process isolation; knows nothing about networking.

    sandbox.ns       unshare, setns, mount, umount2, pivot_root, id maps
    sandbox.caps     dropping capabilities, securebits, no_new_privs, dumpable
    sandbox.seccomp  policy files (policies/README.md), compiling them (pyseccomp)
    sandbox.bpf      compiled policies (policies/NAME.bpf) and loading a filter
    sandbox.isolate  isolate_worker(): the whole sequence, in order
    sandbox.fdpass   send_fds/recv_fds over SCM_RIGHTS

Imports only the standard library, python-prctl, pyseccomp and
passt_sep.record (records without the start-up cost of dataclasses). Nothing is
imported here: import the submodule you need (sandbox.seccomp imports
pyseccomp, which runs ldconfig at import time, so import it early; the
run-time path, sandbox.bpf, needs it only for a policy edited since it was
compiled, and then in the parent, before the fork).
"""

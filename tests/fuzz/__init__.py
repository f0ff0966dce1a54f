# SPDX-License-Identifier: GPL-2.0-or-later
"""Coverage-guided fuzzing of every guest- or client-reachable entry point (docs/fuzzing.md)."""

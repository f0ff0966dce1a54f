# SPDX-License-Identifier: GPL-2.0-or-later
"""VM test harness: a qemu guest for passt-mode tests (see harness.py)."""

# SPDX-License-Identifier: GPL-2.0-or-later
"""passt-sep: user-mode networking for VMs and namespaces, passt/pasta compatible."""

__version__ = "0.1.0"

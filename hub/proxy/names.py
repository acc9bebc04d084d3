"""The grammar of upstream registry hosts, shared by the config file's and the admin API's checks."""

from __future__ import annotations

import re

# A registry host as containerd's `?ns=` names it: DNS labels in lowercase or a bracketed IP address,
# then an optional port.
HOST_PORT = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])"
                       r"(?::[0-9]{1,5})?$")

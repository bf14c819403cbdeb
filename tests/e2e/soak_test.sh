#!/bin/bash
# The soak's short version: 10 live migrations (--verify full) alternating between two
# long-lived receivers, each byte-identical to the paused source, the receivers' file
# descriptors and RSS stable across them. bench/soak.sh does the work (200 by default);
# 16 MiB guests keep it within a few seconds per migration on a busy two-core host.
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
SIZE=16M exec bash "$(dirname "$0")/../../bench/soak.sh" "$RAMSHIFT" 10

#!/usr/bin/env bash
# Keep the newest ccache entry of each nightly cell ("ccache-<cell>-<config hash>-<run id>",
# .github/workflows/nightly.yml) and delete the older ones: every night saves a new entry
# on top of the newest, and the repository's cache space is shared.
#
# Environment: what gh needs (GH_TOKEN, GH_REPO); KEEP, entries kept per cell (1).
set -euo pipefail
keep=${KEEP:-1}
declare -A seen=()
while read -r id key; do
  [ -n "$id" ] || continue
  cell=$(cut -d- -f2 <<<"$key")
  seen[$cell]=$(( ${seen[$cell]:-0} + 1 ))
  if [ "${seen[$cell]}" -gt "$keep" ]; then
    echo "prune-caches: deleting $key"
    gh cache delete "$id"
  fi
done < <(gh cache list --key ccache- --limit 100 --sort created_at --order desc \
           --json id,key --jq '.[] | "\(.id) \(.key)"')

#!/usr/bin/env bash
# The nightly's baseline: the newest earlier night of this workflow on this branch whose
# merge succeeded, walking back.  A night uploads "nightly-merged" only when `lab merge`
# wrote its merged run, and never when it was cancelled (.github/workflows/nightly.yml),
# so the newest earlier night whose artifact downloads whole is it.  A night whose artifact
# is missing or expired is skipped, and so is one whose download holds no merged run.
#
# Usage: previous-night.sh DIR  (DIR must not exist; left absent when no night qualifies)
# Environment: GITHUB_RUN_ID, GITHUB_REF_NAME (set by Actions), NIGHTS (how many runs to
# walk back through, 30 by default), and what gh needs (GH_TOKEN, GH_REPO).
set -euo pipefail
into=${1:?usage: previous-night.sh DIR}
if [ -e "$into" ]; then
  echo "previous-night: $into exists; give a new directory" >&2
  exit 2
fi
runs=$(gh run list --workflow nightly.yml --branch "$GITHUB_REF_NAME" --limit "${NIGHTS:-30}" \
         --json databaseId,status --jq '.[] | select(.status == "completed") | .databaseId')
for id in $runs; do
  [ "$id" = "$GITHUB_RUN_ID" ] && continue
  rm -rf "$into.part"
  if gh run download "$id" --name nightly-merged --dir "$into.part" >/dev/null 2>&1 \
      && [ -f "$into.part/results.jsonl" ] && [ -f "$into.part/matrix.json" ]; then
    mv "$into.part" "$into"
    echo "previous-night: the baseline is run $id"
    exit 0
  fi
  echo "previous-night: run $id left no merged run; walking back"
done
rm -rf "$into.part"
echo "previous-night: no earlier night left a merged run: nothing to compare with"

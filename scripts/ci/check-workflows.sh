#!/usr/bin/env bash
# Check the GitHub Actions workflows offline: GitHub's workflow schema
# (check-jsonschema's vendored copy) and zizmor's security audits (template
# injection, unpinned actions, excessive permissions, cache poisoning, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/ci/tools.sh
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
    echo "no workflow in .github/workflows" >&2
    exit 1
fi
.venv-tools/bin/check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
# --offline: no GitHub API calls (the audits that need them are skipped).
.venv-tools/bin/zizmor --offline --no-progress .github/workflows

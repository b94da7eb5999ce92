#!/usr/bin/env bash
# Assemble a Hugging Face Space (Docker SDK) from this repository's committed files:
#   bash deploy/huggingface-space/assemble.sh OUT_DIR
# OUT_DIR then holds the Dockerfile, the app and this folder's README.md (the Space's front matter:
# sdk: docker, app_port: 8501) in place of the repository's; tests, benchmarks and screenshots are
# left out. Upload it with `hf upload USER/SPACE OUT_DIR . --repo-type space` (large files such as
# the bundled weights go through the Hub's large-file storage on their own), or commit it to the
# Space's git repository with git-lfs. docs/hosting.md, "Host it".
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: bash deploy/huggingface-space/assemble.sh OUT_DIR}"
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "assemble.sh: $out is not empty; give a new or empty folder" >&2
  exit 2
fi
if [ -n "$(git -C "$root" status --porcelain)" ]; then
  echo "assemble.sh: note: uncommitted changes are not included (the Space gets HEAD, $(git -C "$root" rev-parse --short HEAD))" >&2
fi
mkdir -p "$out"
git -C "$root" archive --format=tar HEAD -- . ':!tests' ':!bench' ':!docs/img' ':!deploy/huggingface-space' | tar -x -C "$out"
cp "$root/deploy/huggingface-space/README.md" "$out/README.md"
echo "assembled the Space in $out ($(du -sh "$out" | cut -f1)); upload: hf upload USER/SPACE $out . --repo-type space"

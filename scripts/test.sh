#!/usr/bin/env bash
# The one test command (`just test`): builds what it needs, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets

#!/usr/bin/env bash
# Kills `braid run --store` with SIGKILL at random moments and resumes each run, N times (default
# 200): the final state must be the uninterrupted one, and every node whose end was recorded
# before the kill must have run exactly once (each node counts its executions in a file). The
# same test the suite runs 20 times (and 10 on PostgreSQL when BRAID_TEST_POSTGRES_URL is set).
#
#   scripts/kill-resume.sh            # 200 trials on SQLite (and PostgreSQL if the variable is set)
#   scripts/kill-resume.sh 1000
set -euo pipefail
cd "$(dirname "$0")/.."
export BRAID_KILL_TRIALS="${1:-200}"
exec cargo test -p braid-cli --test e2e -- --nocapture \
  durable::a_run_killed_at_random_moments_resumes_without_running_settled_nodes_again

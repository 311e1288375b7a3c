# Shared settings for kanaria's scripts: everything installed or built lives outside the clone,
# under KANARIA_CACHE, so a fresh clone reuses it and `git clean` never loses it.
export KANARIA_CACHE="${KANARIA_CACHE:-$HOME/.cache/kanaria}"
export KANARIA_VENV="${KANARIA_VENV:-$KANARIA_CACHE/venv}"
# checkov has a venv of its own: its exact boto3 pin conflicts with the SAM CLI's.
export KANARIA_CHECKOV_VENV="${KANARIA_CHECKOV_VENV:-$KANARIA_CACHE/checkov-venv}"
export KANARIA_NODE="${KANARIA_NODE:-$KANARIA_CACHE/node}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KANARIA_CACHE/target}"
export PATH="$KANARIA_VENV/bin:$KANARIA_NODE/node_modules/.bin:$PATH"
# SAM CLI: no telemetry, no update checks (CI has no network but the package registries).
export SAM_CLI_TELEMETRY=0
export SAM_CLI_DISABLE_UPDATE_CHECK=1
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

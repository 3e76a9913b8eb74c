#!/bin/sh
# The end-to-end test drives the console in a real terminal: install tmux when it is missing.
set -e
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq tmux >/dev/null
elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq tmux >/dev/null
else
    echo "tmux is needed for the end-to-end test: install it (apt-get install tmux)" >&2
    exit 1
fi

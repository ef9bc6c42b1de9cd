# Shared helpers for the test-environment component scripts (sourced, never run).
# Every component keeps its builds under $ALERTOPS_CACHE (keyed by version) and its
# runtime state (pid, log, data) under $TESTENV_RUN/<component>/.
set -euo pipefail

ALERTOPS_CACHE="${ALERTOPS_CACHE:-$HOME/.cache/alertops}"
TESTENV_RUN="${TESTENV_RUN:-$ALERTOPS_CACHE/testenv}"
TESTENV_HOST=127.0.0.1
export GOMODCACHE="${GOMODCACHE:-$ALERTOPS_CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$ALERTOPS_CACHE/go/build}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
mkdir -p "$ALERTOPS_CACHE" "$TESTENV_RUN"

say() { printf '[testenv %s] %s\n' "$COMPONENT" "$*" >&2; }

# die MESSAGE [LOGFILE]: a failure names the component and where to look.
die() {
  printf '[testenv %s] ERROR: %s\n' "$COMPONENT" "$1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    printf '[testenv %s] last lines of %s:\n' "$COMPONENT" "$2" >&2
    tail -n 20 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

state_dir() { local d="$TESTENV_RUN/$COMPONENT"; mkdir -p "$d"; echo "$d"; }
pidfile() { echo "$(state_dir)/${1:-$COMPONENT}.pid"; }

# pid_alive NAME: true when NAME's recorded pid is a live process.
pid_alive() {
  local f; f=$(pidfile "${1:-$COMPONENT}")
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# port_busy PORT: true when something listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/$TESTENV_HOST/$1") 2>/dev/null; }

# require_free_port PORT WHAT: a busy port is a clear error, not a hang.
require_free_port() {
  if port_busy "$1"; then
    die "port $TESTENV_HOST:$1 ($2) is already in use by a process this testenv did not start; stop it or set the port variable"
  fi
}

# start_bg NAME LOGFILE CMD...: start CMD detached in its own session, record its pid.
start_bg() {
  local name=$1 logf=$2; shift 2
  setsid "$@" >>"$logf" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
}

# wait_until SECONDS DESCRIPTION LOGFILE CMD...: poll CMD until it succeeds or the deadline passes.
wait_until() {
  local secs=$1 what=$2 logf=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then die "$what did not happen within ${secs}s" "$logf"; fi
    sleep 0.5
  done
}

# stop_pid NAME: stop exactly the process we started (TERM, then KILL after a deadline).
stop_pid() {
  local name=${1:-$COMPONENT} f pid
  f=$(pidfile "$name")
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# timed LABEL CMD...: run CMD and report how long it took (cold builds are reported).
timed() {
  local label=$1; shift
  local t0=$SECONDS
  "$@"
  say "$label took $((SECONDS - t0))s"
}

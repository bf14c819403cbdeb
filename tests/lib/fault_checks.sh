# Checks shared by the fault matrices: tests/netns/fault_matrix_netns_test.sh (tcp between two
# network namespaces) and tests/softroce/fault_cases.sh (rdma in the soft-RoCE VM). Each
# asserts what a user would notice: how an end exits and how soon, what it says, what its
# report says, that nothing ran the guest twice, that no partial output is left. Plain
# grep/sed only: the VM has busybox, not python.
#
# The caller defines pass and fail (tests/e2e/lib.sh's, or its own with the same meaning).
# The case functions at the end (kill_rx, kill_tx) also use the caller's start_rx, start_tx
# (which set RX and TX), nothing_left, $W (its folder), $LIMIT (seconds an end may take to
# give up) and $FAULT_LABEL (prefixed to each case's name: "rdma " in the soft-RoCE matrix).

# wait_log FILE PATTERN: until FILE matches (30 s at most), then 1 s more (a round 0 under
# way; well inside a hold).
wait_log() {
  for _ in $(seq 600); do grep -qE "$2" "$1" 2>/dev/null && { sleep 1; return 0; }; sleep 0.05; done
  echo "(never saw /$2/ in $1)"; return 1
}

# ends_with CASE PID WANT SECONDS [LOGS [ON_HANG]]: PID exits with WANT within SECONDS (else it
# is killed); on failure the tails of LOGS (space-separated stderr files, both ends') say why,
# and a hang first runs the function ON_HANG (e.g. asking both ends for their status).
ends_with() {
  local what=$1 pid=$2 want=$3 limit=$4 log=${5:-} on_hang=${6:-} rc
  for _ in $(seq $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$what: still running after $limit s"; [ -n "$log" ] && tail -n 12 $log
    [ -n "$on_hang" ] && "$on_hang"
    kill -9 "$pid"; wait "$pid" 2>/dev/null; return 1
  fi
  wait "$pid"; rc=$?
  [ "$rc" = "$want" ] && pass "$what: exit $rc" \
    || { fail "$what: exit $rc, wanted $want"; [ -n "$log" ] && tail -n 12 $log; }
}

# says CASE FILE PATTERN: the end's stderr explains.
says() {
  grep -qiE "$3" "$2" && pass "$1: says $(grep -oiE "$3" "$2" | head -1)" \
    || { fail "$1: $2 lacks /$3/"; tail -4 "$2"; }
}

# json_has CASE FILE PATTERN: the end's --json report.
json_has() {
  grep -qE "$3" "$2" 2>/dev/null && pass "$1: report has $(grep -oE "$3" "$2" | head -1)" \
    || { fail "$1: report lacks /$3/"; head -20 "$2" 2>/dev/null; }
}

# never_ran_guest CASE REPORT: a receiver's report shows it never ran the guest. A guest
# taken over but never resumed reports "resumed": {"verified": false, "writes": 0}; no
# "resumed" object at all means it never got that far. (The report is pretty-printed, one
# key per line.)
never_ran_guest() {
  if sed -n '/"resumed"/,/}/p' "$2" 2>/dev/null | grep -qE '"writes": *[1-9]|"verified": *true'; then
    fail "$1: the receiver ran the guest"
  else
    pass "$1: the receiver never ran the guest"
  fi
}

# no_output CASE PATH: neither PATH nor PATH.partial exists.
no_output() {
  [ ! -e "$2" ] && [ ! -e "$2.partial" ] && pass "$1: no output file left" || fail "$1: output left ($(ls "$2"* 2>/dev/null))"
}

# kill_rx CASE RX_ENV TX_ENV WAIT_FILE WAIT_PATTERN GUEST_STATE MESSAGE SEND_ARGS...: the
# receiver killed (-9) once WAIT_FILE matches WAIT_PATTERN; the sender exits 1 within
# $LIMIT s saying MESSAGE, its report says the guest is GUEST_STATE.
kill_rx() {
  local what="${FAULT_LABEL:-}receiver -9 $1" rxenv=$2 txenv=$3 file=$4 pattern=$5 guest=$6 msg=$7
  shift 7
  start_rx $rxenv -- --once || return
  start_tx $txenv -- "$@"
  wait_log "$W/$file" "$pattern"
  kill -9 "$RX"; wait "$RX" 2>/dev/null
  ends_with "$what: sender" "$TX" 1 "$LIMIT"
  says "$what: sender" "$W/tx.err" "$msg"
  json_has "$what: sender" "$W/tx.json" "\"source_guest\": \"$guest"
  nothing_left "$what"
}

# kill_tx CASE RX_ENV TX_ENV WAIT_FILE WAIT_PATTERN MESSAGE SEND_ARGS...: the sender killed
# (-9); the receiver exits 1 within $LIMIT s, says MESSAGE, never ran the guest and left
# nothing (an image is received into --guest-out, so its PATH.partial must go).
kill_tx() {
  local what="${FAULT_LABEL:-}sender -9 $1" rxenv=$2 txenv=$3 file=$4 pattern=$5 msg=$6; shift 6
  local out=()
  [[ "$*" == *file:* ]] && out=(--guest-out "$W/dst.img")
  start_rx $rxenv -- --once ${out[@]+"${out[@]}"} || return
  start_tx $txenv -- "$@"
  wait_log "$W/$file" "$pattern"
  kill -9 "$TX"; wait "$TX" 2>/dev/null
  ends_with "$what: receiver" "$RX" 1 "$LIMIT"
  says "$what: receiver" "$W/rx.err" "$msg"
  json_has "$what: receiver" "$W/rx.json" '"status": "failed"'
  never_ran_guest "$what" "$W/rx.json"
  no_output "$what" "$W/dst.img"
  nothing_left "$what"
}

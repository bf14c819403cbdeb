# Checks shared by the fault matrices: tests/netns/fault_matrix_netns_test.sh (tcp between two
# network namespaces) and tests/softroce/fault_cases.sh (rdma in the soft-RoCE VM). Each
# asserts what a user would notice: how an end exits and how soon, what it says, what its
# report says, that nothing ran the guest twice, that no partial output is left. Plain
# grep/sed only: the VM has busybox, not python.
#
# The caller defines pass and fail (tests/e2e/lib.sh's, or its own with the same meaning).

# wait_log FILE PATTERN: until FILE matches (30 s at most), then 1 s more (a round 0 under
# way; well inside a hold).
wait_log() {
  for _ in $(seq 600); do grep -qE "$2" "$1" 2>/dev/null && { sleep 1; return 0; }; sleep 0.05; done
  echo "(never saw /$2/ in $1)"; return 1
}

# ends_with CASE PID WANT SECONDS: PID exits with WANT within SECONDS (else it is killed).
ends_with() {
  local what=$1 pid=$2 want=$3 limit=$4 rc
  for _ in $(seq $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$what: still running after $limit s"; kill -9 "$pid"; wait "$pid" 2>/dev/null; return 1
  fi
  wait "$pid"; rc=$?
  [ "$rc" = "$want" ] && pass "$what: exit $rc" || fail "$what: exit $rc, wanted $want"
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

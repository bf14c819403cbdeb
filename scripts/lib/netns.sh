# Two "hosts" joined by a real link, for tests and benchmarks: network namespaces NS_A and
# NS_B, a veth pair between them, addresses PREFIX.1 and PREFIX.2, each end shaped with
# `tc tbf` to RATE. Source this file; call netns_link_down from an EXIT trap.
#   netns_link_up NS_A NS_B PREFIX RATE      e.g. netns_link_up rsA$$ rsB$$ 10.77.0 1gbit
netns_link_up() {
  local a=$1 b=$2 prefix=$3 rate=$4 ia=${1:0:11}a ib=${2:0:11}b
  ip netns add "$a" && ip netns add "$b" || return 1
  ip link add "$ia" type veth peer name "$ib" || return 1
  ip link set "$ia" netns "$a"; ip link set "$ib" netns "$b"
  ip -n "$a" addr add "$prefix.1/24" dev "$ia"; ip -n "$b" addr add "$prefix.2/24" dev "$ib"
  ip -n "$a" link set "$ia" up; ip -n "$b" link set "$ib" up
  ip -n "$a" link set lo up; ip -n "$b" link set lo up
  # Why burst 256kb: enough for a full-size TSO burst at 1 Gbit/s; the link measures
  # 0.99x of its rate with iperf3 (docs/benchmarks).
  ip netns exec "$a" tc qdisc add dev "$ia" root tbf rate "$rate" burst 256kb latency 50ms
  ip netns exec "$b" tc qdisc add dev "$ib" root tbf rate "$rate" burst 256kb latency 50ms
}

# Kills what still runs in the namespaces and removes them (the veth goes with them).
netns_link_down() {
  local ns
  for ns in "$@"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  return 0
}

// Verbs settings of an rdma:// connection, read from the generic TransportOptions: the
// backend owns the "rdma-..." names in TransportOptions::settings (the `--rdma-*` flags of
// `ramshift`, documented in docs/user-guide.md) and validates them here.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"
#include "ramshift/transport/transport.h"

namespace ramshift::transport::rdma {

// Defaults follow perftest, UCX and SPDK practice scaled to migration batches.
// ring_slots x slot_bytes is the ring *this* side receives messages into, per queue; the
// peer's send staging mirrors it (both pinned). So the ring is sized by what a side receives:
// a migration destination takes batches (the defaults below), a source only replies
// (kReplySlotBytes, chosen by TransportOptions::receive_load).
struct RdmaTuning {
  uint32_t ring_slots = 8;           // receive-ring slots per queue (credits)
  uint32_t slot_bytes = 512u << 10;  // a 1 MiB batch's entries and zstd output, usually
  uint32_t send_queue_depth = 128;   // work requests in flight per queue (perftest -t)
  uint32_t signal_every = 16;        // selective signaling interval (UCX/eRPC: 16-64)
  uint32_t max_inline = 64;          // control messages up to this size go inline
  // Completion pollers spin instead of sleeping on the completion channel: lower latency,
  // one busy core per queue. Events (false) suit hosts with fewer cores than queues.
  bool busy_poll = false;
  // Guest memory reached through type-2 memory windows, one per queue, where the device has
  // them and the peer takes keys per queue (docs/security.md, *Memory windows*); false gives
  // the peer the memory regions' own keys (`--rdma-memory-windows false`).
  bool memory_windows = true;
  // Local ACK timeout, as the exponent of 4.096 us * 2^N (perftest uses 14 = 67 ms; 1..31).
  // 0 leaves rdma_cm's choice, derived from the route's packet lifetime (about 0.5-1 s on
  // RoCE). A lost packet is retransmitted only after it, up to 7 times.
  uint32_t ack_timeout = 0;
  // Datacenter RoCE placement, as perftest users set it:
  // - type of service on every queue's packets (RoCE v2's IP ToS byte, DSCP = tos >> 2), so
  //   the fabric can put migration traffic in its lossless (PFC) class; -1 = the route's.
  int tos = -1;
  // - the RDMA device the queues must use (ibv_devices' name); empty = whichever the
  //   address resolves to.
  std::string device;
  // - the GID index every queue must use (perftest's -x); rdma_cm picks the GID from the
  //   address and RoCE mode, so this is checked once connected (gid_check.h); -1 = any.
  int gid_index = -1;
  // - the local address the connecting side resolves from (perftest's --source_ip): which
  //   port of a multi-homed host carries the migration; empty = the route's.
  std::string source_ip;
  // A peer that stops answering fails the queue after this long (TransportOptions::
  // peer_timeout, `--peer-timeout`; 0 = only the queue pair's own retransmission limit).
  // It also sets the ACK timeout when --rdma-ack-timeout does not (peer_liveness.h).
  std::chrono::milliseconds peer_timeout{0};
};

// Slot size for a side that receives only control replies (a migration source: round
// acknowledgements, memory keys, the commit; tens of bytes to a few KiB, and anything larger
// is split across slots). 8 x 64 KiB pins 0.5 MiB per queue on each side instead of 4 MiB.
inline constexpr uint32_t kReplySlotBytes = 64u << 10;

// The tuning `settings` ask for, on top of the defaults for `load`; kInvalidArgument naming
// the flag when a value is malformed or out of range.
Result<RdmaTuning> tuning_from(const BackendSettings& settings, ReceiveLoad load);
inline Result<RdmaTuning> tuning_from(const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(RdmaTuning t, tuning_from(options.settings, options.receive_load));
  t.peer_timeout = options.peer_timeout;
  return t;
}

}  // namespace ramshift::transport::rdma

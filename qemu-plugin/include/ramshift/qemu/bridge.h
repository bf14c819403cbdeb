// The QEMU bridge: carries stock QEMU's migration channels over a ramshift transport.
//
//   source QEMU --unix/stdio--> bridge source ==ramshift transport==> bridge dest --unix/stdio-->
//   dest QEMU
//
// Each QEMU connection is a channel; channel c travels on transport queue c, so the
// transport needs at least 1 + multifd-channels queues. Bytes in both directions are carried
// verbatim (pass-through), except that multifd page packets from the source are re-encoded
// with the page pipeline (zero markers, XBZRLE, zstd) when both bridges agree, and rebuilt
// byte for byte before the destination QEMU sees them. Each channel's stream is checked end
// to end: both bridges compare byte counts and XXH3 stream hashes when the channel closes.
//
// A failure on either bridge closes every QEMU connection on both sides: QEMU's migration
// fails, and the source VM keeps running (QEMU's own behaviour on a broken channel). In
// post-copy QEMU pauses instead (`postcopy-paused`, the guest waits on the destination); with
// `recover` the bridges then carry the next set of channels QEMU opens (`migrate-recover` on
// the destination, `migrate ... resume=true` on the source) over a new transport connection:
// one session per set of channels, each checked end to end on its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/migration/cancel.h"
#include "ramshift/migration/report.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/transport/transport.h"

namespace ramshift::qemu {

struct BridgeConfig {
  pipeline::CodecConfig codec;
  bool multifd_aware = true;  // false: pass every channel through untouched
  uint32_t queues = 5;        // source: transport queues = the most channels QEMU may open
  transport::TransportOptions transport;
  int qemu_connect_timeout_ms = 10000;  // destination: wait this long for QEMU's socket
  int accept_timeout_ms = 0;            // source: wait for QEMU's first channel (0 = forever)
  // source: keep retrying a refused connection this long. Why: with exec: QEMU starts both
  // bridges itself, the destination's only a moment before the source's.
  int connect_retry_ms = 5000;
  // Carry more than one session: after a session fails, the source bridge waits up to
  // `recover_wait_ms` for QEMU's next connection (QEMU's post-copy recovery; its listener stays
  // open) and then reconnects to the destination bridge, retrying (the link may still be down)
  // until that same deadline; the destination bridge accepts the next source bridge. Ends with
  // the first session that completes. unix sockets only (exec: starts a new bridge per run).
  bool recover = false;
  int recover_wait_ms = 600000;
  // Set by the caller to cancel from another thread (a signal, the control socket); may be
  // null. Within ~100 ms every QEMU connection is cut and the peer bridge told why, so QEMU's
  // migration fails and the source VM keeps running (QEMU's behaviour on a broken channel).
  migration::CancelToken* cancel = nullptr;
};

// Where the bridge meets QEMU on its side: a unix socket path, or stdio (exec: mode).
struct QemuEndpoint {
  std::string unix_path;  // empty = stdio
  bool stdio() const { return unix_path.empty(); }
};

struct ChannelReport {
  uint16_t id = 0;
  std::string kind;  // "main", "multifd", "other" (by the stream's first bytes)
  std::string mode;  // "passthrough" or "multifd" (packets re-encoded)
  uint64_t bytes_to_dest = 0;
  uint64_t bytes_to_source = 0;
  uint64_t packets = 0;  // multifd packets re-encoded
  // Pages QEMU itself sent as zero in those packets (QEMU 9.0+ lists them by offset, with no
  // bytes; 7.2 sends them as normal pages). Counted by the source bridge.
  uint64_t qemu_zero_pages = 0;
  std::string note;  // why a multifd channel fell back to pass-through
};

// The migration report's keys (same JSON as send/receive: status, verified, total_ms —
// first channel opened to last closed —, setup_ms — connect + HELLO —, guest_bytes — QEMU's
// stream —, wire_bytes, pages, queues, transport, codec, peer, error; role is
// "bridge-source" / "bridge-destination"; downtime and rounds are QEMU's, not the bridge's),
// plus one entry per channel. `verified`: every channel's byte count and XXH3 stream hash agreed.
struct BridgeReport : migration::MigrationReport {
  std::vector<ChannelReport> channels;
  // The failure was this side's QEMU closing a channel while the bridge still wrote to it.
  // Whether that mattered only QEMU can say: after a migration QEMU reports completed, it
  // is bytes QEMU no longer read (qemu-migrate then notes it and succeeds).
  bool qemu_closed_early = false;
  // With BridgeConfig::recover: why each earlier session failed (the report is the last's).
  std::vector<std::string> failed_sessions;
  std::string to_json() const;
};

// Live counters for a progress line (read from another thread).
struct BridgeProgress {
  std::atomic<uint64_t> bytes_to_dest{0};
  std::atomic<uint64_t> wire_bytes{0};
  std::atomic<uint32_t> channels{0};
  std::atomic<double> setup_ms{0};  // set once the bridges are joined (0: still in set-up)
};

// "unix:PATH" -> PATH; kInvalidArgument with the expected form otherwise.
Result<std::string> parse_unix_uri(const std::string& text);

// Source side: connects `queues` queues to `to`, then relays every channel QEMU opens at
// `qemu` (listening there) until they have all closed. `on_ready` runs once the bridge is
// connected and QEMU may start (scripts wait for it before `migrate`).
BridgeReport run_bridge_source(const transport::Uri& to, const QemuEndpoint& qemu,
                               const BridgeConfig& config, BridgeProgress* progress,
                               const std::function<void()>& on_ready);

// Destination side: relays one accepted connection, opening a connection to the
// destination QEMU at `qemu` for each channel the source announces, in the same order.
BridgeReport run_bridge_dest(std::unique_ptr<transport::Connection> conn, const QemuEndpoint& qemu,
                             const BridgeConfig& config, BridgeProgress* progress);

// Destination side, every session: accepts a source bridge on `listener` (waiting up to
// `first_wait_ms`, 0 = forever) and relays it with run_bridge_dest; with config.recover, after
// a failed session accepts the next (up to config.recover_wait_ms) until one completes.
// config.cancel ends the wait. `on_session` is told each accepted peer.
BridgeReport serve_bridge_dest(transport::Listener& listener, const QemuEndpoint& qemu,
                               const BridgeConfig& config, BridgeProgress* progress,
                               int first_wait_ms,
                               const std::function<void(const std::string&)>& on_session = {});

}  // namespace ramshift::qemu

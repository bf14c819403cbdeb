// `ramshift bench`: throughput of the real page pipeline over a real transport, one
// configuration (queues x message size x codec) per connection.
//
// The client owns a working set of two generations of synthetic memory (`pattern`); pass k
// sends generation k % 2 in batches of `message_bytes`, spread over the data queues exactly
// as a migration spreads chunks (chunk c on queue c % queues), so each queue's XBZRLE cache
// meets the same pages every pass. With an XBZRLE codec every pass after the first is a
// delta against the other generation — what re-dirtied pages cost. The server decodes every
// batch into its own copy of the working set (validated like a migration) and acknowledges
// each one; a batch's latency is post to acknowledgement. On transports with one-sided
// writes (rdma) raw pages are placed by RDMA WRITE into the server's registered memory, as
// a migration does.
//
// Connection layout: queue 0 carries control (configuration, memory keys, result), queues
// 1..N the data. Every control and data message is validated by the receiving side.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/guest/pattern.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/transport/transport.h"

namespace ramshift::bench {

// The synthetic contents: any guest::Pattern; with `delta` the second generation differs
// from the first (mixed) by one byte per page, XBZRLE's best case.
Result<guest::Pattern> parse_bench_pattern(std::string_view name);

struct BenchPoint {  // one configuration
  uint32_t queues = 1;
  uint32_t message_bytes = 256u << 10;  // pages per batch = message_bytes / page_size
  pipeline::CodecMode codec = pipeline::CodecMode::kNone;
  int zstd_level = 1;
  // Backend settings (TransportOptions::settings), e.g. "rdma-sq-depth"; the backend in use
  // reads its own.
  transport::BackendSettings backend_settings;
  // Queue q's thread runs on cpus[q % size] (pin_queue_thread, as send's --cpus); empty:
  // wherever the scheduler puts it.
  std::vector<uint32_t> cpus;
};

struct BenchSettings {
  transport::Uri to;
  guest::Pattern pattern = guest::Pattern::kMixed;
  std::chrono::milliseconds duration{3000};
  uint64_t working_set_bytes = 32ull << 20;  // per generation
  uint32_t page_size = 4096;
  uint64_t xbzrle_cache_bytes = 64ull << 20;  // all queues, each side
  std::chrono::milliseconds connect_timeout{10000};
};

struct BenchResult {
  BenchPoint point;
  std::string transport;  // "tcp", "rdma", ...
  double seconds = 0;     // first post to last acknowledgement
  uint64_t guest_bytes = 0;
  uint64_t wire_bytes = 0;  // batch bodies + placed pages + bench headers
  uint64_t messages = 0;
  double gbit_per_s = 0;    // wire
  double gbytes_per_s = 0;  // guest memory, decimal GB
  double messages_per_s = 0;
  double sender_cpu_s_per_gb = 0;  // process CPU seconds per decimal GB of guest memory
  double receiver_cpu_s_per_gb = 0;
  double latency_p50_ms = 0;
  double latency_p99_ms = 0;
  bool placed = false;  // raw pages went by one-sided writes
  // The backend's own counters (LinkStats), where it keeps them (dpdk): frames the client
  // sent again, and frames either side threw away.
  std::optional<uint64_t> retransmitted_frames, dropped_frames;
  // The client's bytes copied and sent by reference on the way out (LinkStats), where counted.
  std::optional<uint64_t> sent_copied_bytes, sent_referenced_bytes;
  uint64_t pages_zero = 0, pages_xbzrle = 0, pages_zstd = 0, pages_raw = 0, pages_placed = 0;
};

// Progress of the configuration in flight, for a display: fraction of its duration done.
using BenchProgress = std::function<void(double fraction)>;

// Connects to a `bench --server` at settings.to and measures one configuration.
// kInvalidArgument for a configuration the transport cannot carry, kUnreachable/kTimeout,
// kProtocol when the server rejects it (its message says why).
Result<BenchResult> run_point(const BenchSettings& settings, const BenchPoint& point,
                              const BenchProgress& progress = {});

struct ServerOptions {
  transport::Uri listen;
  transport::BackendSettings backend_settings;  // TransportOptions::settings
  bool once = false;                            // exit after one configuration
  // Called once listening, with the bound address (port 0 resolved).
  std::function<void(const transport::Uri&)> on_listening;
  // Called after each configuration with a line to show (may be empty).
  std::function<void(const std::string&)> on_served;
};

// Serves configurations until `stop` is set (checked every 200 ms) or, with `once`, after one.
// Invalid input from a client ends that connection with an error sent to it and logged;
// the server keeps serving. Fails only when it cannot listen.
Status serve(const ServerOptions& options, const std::atomic<bool>& stop);

// Output helpers.
std::string results_json(const BenchSettings& s, const std::vector<BenchResult>& results);
std::string results_csv(const std::vector<BenchResult>& results);
std::string results_table(const std::vector<BenchResult>& results);
// Draws throughput against queues and against message size with gnuplot (`.svg` or `.png`).
Status plot_results(const std::vector<BenchResult>& results, const std::string& path);

}  // namespace ramshift::bench

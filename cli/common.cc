#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift::cli {

int exit_code_for(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kOk:
      return 0;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kNoSpace:
    case ErrorCode::kAddressInUse:
    case ErrorCode::kUnreachable:
    case ErrorCode::kMismatch:
      return 2;
    default:
      return 1;
  }
}

void RdmaFlags::add_to(CLI::App* cmd) {
  const char* g = "rdma:// (ignored by other transports)";
  cmd->add_option("--rdma-ring-slots", tuning.ring_slots,
                  "slots per queue of the ring this side receives into = messages the peer "
                  "may have in flight (2..1024)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-slot-size", slot_size,
                  "bytes per slot of the ring this side receives into; larger messages "
                  "travel in several (4K..8M)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-sq-depth", tuning.send_queue_depth,
                  "send work requests in flight per queue")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-signal-every", tuning.signal_every,
                  "request a completion every N work requests (selective signaling)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-inline", tuning.max_inline, "send payloads up to N bytes inline")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-ack-timeout", tuning.ack_timeout,
                  "local ACK timeout exponent: 4.096 us * 2^N before a retransmission "
                  "(1..31; 0 = rdma_cm's default from the route)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-busy-poll", tuning.busy_poll,
                  "true: completion pollers spin (a core per queue); false: sleep on events")
      ->capture_default_str()
      ->group(g);
}

Result<transport::RdmaTuning> RdmaFlags::resolve() const {
  transport::RdmaTuning t = tuning;
  RS_ASSIGN_OR_RETURN(uint64_t slot, parse_size(slot_size));
  if (slot < 4096 || slot > (8u << 20))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--rdma-slot-size {} is outside 4K..8M", slot_size));
  t.slot_bytes = static_cast<uint32_t>(slot);
  if (t.ring_slots < 2 || t.ring_slots > 1024)
    return Status(ErrorCode::kInvalidArgument, "--rdma-ring-slots must be 2..1024");
  if (t.send_queue_depth < 8 || t.signal_every < 1 || t.signal_every > t.send_queue_depth / 2)
    return Status(ErrorCode::kInvalidArgument,
                  "--rdma-sq-depth must be >= 8 and --rdma-signal-every 1..half of it");
  if (t.ack_timeout > 31)
    return Status(ErrorCode::kInvalidArgument, "--rdma-ack-timeout must be 0..31");
  return t;
}

int fail_with(const Status& s) {
  log::error("{}", s.message());
  return exit_code_for(s);
}

void write_json(const migration::MigrationReport& report, const std::string& path) {
  if (path.empty()) return;
  std::string text = report.to_json() + "\n";
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  std::ofstream out(path);
  out << text;
  if (!out) log::error("cannot write the JSON report to {}", path);
}

void print_summary(const migration::MigrationReport& r) {
  if (log::level() > log::Level::kWarn) return;
  if (!r.completed) {
    fmt::print(stderr, "ramshift: {} failed after {:.0f} ms: {}\n", r.role, r.total_ms,
               r.error.message());
    return;
  }
  double seconds = r.total_ms / 1000;
  fmt::print(
      stderr,
      "ramshift: {} completed and verified: {} in {:.2f} s ({}, {:.0f} Mbit/s), {} on the wire "
      "over {} {} queue(s), codec {}\n"
      "ramshift: pages zero {} xbzrle {} zstd {} raw {} placed {}; setup {:.0f} ms\n",
      r.role, format_bytes(r.guest_bytes), seconds,
      format_rate(seconds > 0 ? r.guest_bytes / seconds : 0), r.throughput_mbps(),
      format_bytes(r.wire_bytes), r.queues, r.transport, r.codec, r.pages.zero, r.pages.xbzrle,
      r.pages.zstd, r.pages.raw, r.pages.placed, r.setup_ms);
}

}  // namespace ramshift::cli

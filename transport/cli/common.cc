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

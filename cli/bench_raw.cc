// `ramshift bench --raw`: the port's raw ceiling (ramshift/transport/raw_bench.h), frames
// blasted and counted with no protocol, printed beside what `bench` measures of the protocol.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "bench_options.h"
#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/transport/registry.h"

namespace ramshift::cli {
namespace {

using transport::RawBenchConfig;
using transport::RawBenchReport;

std::string to_json(const RawBenchReport& r, const transport::Uri& address) {
  bool sender = r.role == RawBenchConfig::Role::kSender;
  nlohmann::ordered_json j;
  j["mode"] = "raw";
  j["role"] = sender ? "sender" : "receiver";
  j["address"] = address.to_string();
  j["seconds"] = r.seconds;
  j["payload_bytes"] = r.payload_bytes;
  j["wire_bytes"] = r.wire_bytes;
  j["gbit_per_s"] = r.payload_gbit_per_s();
  j["wire_gbit_per_s"] = r.wire_gbit_per_s();
  j["frames_per_s"] = r.frames_per_s();
  if (sender) {
    j["offered_frames"] = r.offered_frames;
    j["accepted_frames"] = r.accepted_frames;
  } else {
    j["received_frames"] = r.received_frames;
    j["foreign_frames"] = r.foreign_frames;
    j["end_marker"] = r.end_marker;
    if (r.end_marker) j["sender_accepted_frames"] = r.sender_accepted_frames;
  }
  j["payload_total_bytes"] = r.payload_total;
  j["wire_total_bytes"] = r.wire_total;
  return j.dump(2);
}

std::string summary(const RawBenchReport& r) {
  std::string rates = fmt::format(
      "{:.2f} Gbit/s of payload ({:.2f} on the wire), {:.3f} M frames/s of {}-byte payloads in "
      "{:.2f} s",
      r.payload_gbit_per_s(), r.wire_gbit_per_s(), r.frames_per_s() / 1e6, r.payload_bytes,
      r.seconds);
  if (r.role == RawBenchConfig::Role::kSender) {
    double share = r.offered_frames ? 100.0 * r.accepted_frames / r.offered_frames : 0;
    return fmt::format("raw sender: {}; offered {} frames, the port accepted {} ({:.1f}%)", rates,
                       r.offered_frames, r.accepted_frames, share);
  }
  std::string end =
      r.end_marker ? fmt::format("the sender's port accepted {} ({} not counted here)",
                                 r.sender_accepted_frames,
                                 int64_t(r.sender_accepted_frames) - int64_t(r.received_frames))
                   : std::string("no end marker arrived (ended by time or signal)");
  return fmt::format("raw receiver: {}; {} frames, {} foreign; {}", rates, r.received_frames,
                     r.foreign_frames, end);
}

}  // namespace

int run_raw_bench(const RawBenchRun& run, const std::atomic<bool>& stop) {
  RawBenchConfig c;
  c.role = run.server ? RawBenchConfig::Role::kReceiver : RawBenchConfig::Role::kSender;
  auto uri = transport::parse_uri(run.address);
  if (!uri) return fail_with(uri.status());
  c.address = *uri;
  c.settings = run.settings;
  if (run.seconds <= 0 || run.seconds > 3600)
    return fail_with(Status(ErrorCode::kInvalidArgument, "--seconds must be in (0, 3600]"));
  c.duration = transport::Millis(int64_t(run.seconds * 1000));
  c.connect_timeout = transport::Millis(int64_t(run.connect_timeout_s * 1000));
  if (!run.frame_size.empty()) {
    auto size = parse_size(run.frame_size);
    if (!size) return fail_with(size.status());
    if (*size == 0 || *size > 65535)
      return fail_with(Status(ErrorCode::kInvalidArgument,
                              fmt::format("--frame-size {} must be 1..the port's MTU less 48 "
                                          "bytes (1452 at 1500)",
                                          run.frame_size)));
    c.payload_bytes = uint32_t(*size);
  }
  c.stop = &stop;
  // stdout carries the report when --json -: the other lines go to stderr then.
  FILE* text = run.json == "-" ? stderr : stdout;
  c.on_listening = [text](const transport::Uri& at) {
    std::fprintf(text, "listening on %s (raw)\n", at.to_string().c_str());
    std::fflush(text);
  };
  auto r = transport::run_raw_bench(c);
  if (!r) return fail_with(r.status());
  if (log::level() <= log::Level::kWarn) {
    std::fprintf(text, "%s\n", summary(*r).c_str());
    std::fflush(text);
  }
  write_json_text(to_json(*r, c.address), run.json);
  if (r->frames() == 0)
    return fail_with(Status(ErrorCode::kTimeout, run.server
                                                     ? "bench --raw: no frame of ours arrived"
                                                     : "bench --raw: the port accepted no frame"));
  return 0;
}

}  // namespace ramshift::cli

// `ramshift bench` output: JSON, CSV, a table for people, and gnuplot charts.
#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "ramshift/base/units.h"
#include "ramshift/bench/throughput.h"

namespace ramshift::bench {
namespace {

std::string size_label(uint64_t bytes) {
  if (bytes % (1u << 20) == 0) return fmt::format("{}M", bytes >> 20);
  if (bytes % (1u << 10) == 0) return fmt::format("{}K", bytes >> 10);
  return std::to_string(bytes);
}

// The queue threads' CPUs as --cpus takes them, "any" when unpinned.
std::string cpus_label(const std::vector<uint32_t>& cpus) {
  return cpus.empty() ? "any" : fmt::format("{}", fmt::join(cpus, ","));
}

nlohmann::json point_json(const BenchResult& r) {
  nlohmann::json j = {
      {"transport", r.transport},
      {"queues", r.point.queues},
      {"message_bytes", r.point.message_bytes},
      {"codec", pipeline::codec_name(r.point.codec)},
      {"zstd_level", r.point.zstd_level},
      {"cpus", r.point.cpus},  // [] = unpinned
      {"seconds", r.seconds},
      {"guest_bytes", r.guest_bytes},
      {"wire_bytes", r.wire_bytes},
      {"messages", r.messages},
      {"gbit_per_s", r.gbit_per_s},
      {"gbytes_per_s", r.gbytes_per_s},
      {"messages_per_s", r.messages_per_s},
      {"sender_cpu_s_per_gb", r.sender_cpu_s_per_gb},
      {"receiver_cpu_s_per_gb", r.receiver_cpu_s_per_gb},
      {"latency_p50_ms", r.latency_p50_ms},
      {"latency_p99_ms", r.latency_p99_ms},
      {"raw_pages_placed", r.placed},
      {"pages",
       {{"zero", r.pages_zero},
        {"xbzrle", r.pages_xbzrle},
        {"zstd", r.pages_zstd},
        {"raw", r.pages_raw},
        {"placed", r.pages_placed}}},
  };
  if (r.retransmitted_frames) j["retransmitted_frames"] = *r.retransmitted_frames;
  if (r.dropped_frames) j["dropped_frames"] = *r.dropped_frames;
  if (r.sent_copied_bytes) j["sent_copied_bytes"] = *r.sent_copied_bytes;
  if (r.sent_referenced_bytes) j["sent_referenced_bytes"] = *r.sent_referenced_bytes;
  if (r.transport == "rdma") {
    // The --rdma-* flags as the command passed them on (all of them, checked by the backend).
    const auto& s = r.point.backend_settings;
    auto number = [&](std::string_view name) -> uint64_t {
      auto v = s.number(name, 0);
      return v ? v.value() : 0;
    };
    auto slot = parse_size(s.find("rdma-slot-size").value_or("0"));
    auto busy = s.flag("rdma-busy-poll", false);
    j["rdma"] = {{"ring_slots", number("rdma-ring-slots")},
                 {"slot_bytes", slot ? slot.value() : 0},
                 {"send_queue_depth", number("rdma-sq-depth")},
                 {"signal_every", number("rdma-signal-every")},
                 {"max_inline", number("rdma-inline")},
                 {"busy_poll", busy && busy.value()}};
  }
  return j;
}

int panels(const std::vector<BenchResult>& results) {
  std::set<uint32_t> q, m;
  for (const auto& r : results) {
    q.insert(r.point.queues);
    m.insert(r.point.message_bytes);
  }
  return (q.size() > 1 || m.size() == 1 ? 1 : 0) + (m.size() > 1 ? 1 : 0);
}

}  // namespace

std::string results_json(const BenchSettings& s, const std::vector<BenchResult>& results) {
  nlohmann::json j = {{"peer", s.to.to_string()},
                      {"pattern", guest::pattern_name(s.pattern)},
                      {"seconds_per_point", s.duration.count() / 1000.0},
                      {"working_set_bytes", s.working_set_bytes},
                      {"page_size", s.page_size},
                      {"results", nlohmann::json::array()}};
  for (const auto& r : results) j["results"].push_back(point_json(r));
  return j.dump(2);
}

std::string results_csv(const std::vector<BenchResult>& results) {
  std::string out =
      "transport,queues,message_bytes,codec,gbit_per_s,gbytes_per_s,messages_per_s,"
      "sender_cpu_s_per_gb,receiver_cpu_s_per_gb,latency_p50_ms,latency_p99_ms,cpus\n";
  for (const auto& r : results)
    out += fmt::format("{},{},{},{},{:.4f},{:.4f},{:.1f},{:.4f},{:.4f},{:.4f},{:.4f},\"{}\"\n",
                       r.transport, r.point.queues, r.point.message_bytes,
                       pipeline::codec_name(r.point.codec), r.gbit_per_s, r.gbytes_per_s,
                       r.messages_per_s, r.sender_cpu_s_per_gb, r.receiver_cpu_s_per_gb,
                       r.latency_p50_ms, r.latency_p99_ms, cpus_label(r.point.cpus));
  return out;
}

std::string results_table(const std::vector<BenchResult>& results) {
  // Retransmits and drops only where the backend counts them (dpdk); "-" elsewhere.
  auto count = [](const std::optional<uint64_t>& n) {
    return n ? std::to_string(*n) : std::string("-");
  };
  std::string out = fmt::format(
      "{:<9} {:>6} {:<5} {:>7} {:<11} {:>8} {:>9} {:>9} {:>13} {:>9} {:>9} {:>9} {:>9}\n",
      "transport", "queues", "cpus", "message", "codec", "Gbit/s", "guest GB/s", "msg/s",
      "CPU s/GB tx/rx", "p50 ms", "p99 ms", "retransmit", "dropped");
  for (const auto& r : results)
    out += fmt::format(
        "{:<9} {:>6} {:<5} {:>7} {:<11} {:>8.2f} {:>9.3f} {:>9.0f} {:>6.2f}/{:<6.2f} {:>9.2f} "
        "{:>9.2f} {:>9} {:>9}\n",
        r.transport, r.point.queues, cpus_label(r.point.cpus), size_label(r.point.message_bytes),
        pipeline::codec_name(r.point.codec), r.gbit_per_s, r.gbytes_per_s, r.messages_per_s,
        r.sender_cpu_s_per_gb, r.receiver_cpu_s_per_gb, r.latency_p50_ms, r.latency_p99_ms,
        count(r.retransmitted_frames), count(r.dropped_frames));
  return out;
}

Status plot_results(const std::vector<BenchResult>& results, const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  const char* terminal = ext == ".svg"   ? "svg size 1000,450 dynamic"
                         : ext == ".png" ? "pngcairo size 1000,450"
                                         : nullptr;
  if (!terminal)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--plot {}: the file must end in .svg or .png", path));
  if (results.empty()) return Status(ErrorCode::kInvalidArgument, "nothing to plot");
  // One data block per series: left panel, a line per (message size, codec) over queues;
  // right panel, a line per (queues, codec) over message size.
  std::map<std::string, std::vector<std::pair<double, double>>> by_queues, by_size;
  for (const auto& r : results) {
    const char* codec = pipeline::codec_name(r.point.codec);
    by_queues[fmt::format("{} {}", size_label(r.point.message_bytes), codec)].emplace_back(
        r.point.queues, r.gbit_per_s);
    by_size[fmt::format("{}q {}", r.point.queues, codec)].emplace_back(
        r.point.message_bytes / 1024.0, r.gbit_per_s);
  }
  std::string script = fmt::format("set terminal {}\nset output '{}'\nset multiplot layout 1,{}\n",
                                   terminal, path, panels(results));
  script += "set grid\nset key left top\nset ylabel 'Gbit/s'\nset yrange [0:*]\n";
  auto panel = [&](auto& series, const char* xlabel, bool logx) {
    script += fmt::format("set xlabel '{}'\n{}\nplot ", xlabel,
                          logx ? "set logscale x 2" : "unset logscale x");
    bool first = true;
    for (const auto& [name, pts] : series) {
      script += fmt::format("{}'-' using 1:2 with linespoints title '{}'", first ? "" : ", ", name);
      first = false;
    }
    script += "\n";
    for (auto& [name, pts] : series) {
      std::sort(pts.begin(), pts.end());
      for (const auto& [x, y] : pts) script += fmt::format("{} {}\n", x, y);
      script += "e\n";
    }
  };
  // A panel whose x axis holds a single value would be a column of dots: leave it out.
  std::set<uint32_t> queue_counts, sizes;
  for (const auto& r : results) {
    queue_counts.insert(r.point.queues);
    sizes.insert(r.point.message_bytes);
  }
  if (queue_counts.size() > 1 || sizes.size() == 1) panel(by_queues, "queues", false);
  if (sizes.size() > 1) panel(by_size, "message size (KiB)", true);
  script += "unset multiplot\n";
  FILE* gp = ::popen("gnuplot 1>&2", "w");
  if (!gp) return errno_status(ErrorCode::kIo, "starting gnuplot", errno);
  std::fputs(script.c_str(), gp);
  int rc = ::pclose(gp);
  if (rc != 0 || !std::filesystem::exists(path))
    return Status(ErrorCode::kIo,
                  fmt::format("gnuplot could not draw {} (exit {}); install it with `apt-get "
                              "install gnuplot-nox`",
                              path, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1));
  return Status::ok();
}

}  // namespace ramshift::bench

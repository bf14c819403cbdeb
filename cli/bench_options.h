// Option groups and display shared by `ramshift bench` and `ramshift tune` (bench.cc).
#pragma once

#include <CLI/CLI.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "ramshift/bench/throughput.h"
#include "ramshift/migration/config.h"
#include "ramshift/transport/settings.h"

namespace ramshift::cli {

// --to, --pattern, --seconds, --working-set, --xbzrle-cache, --connect-timeout.
struct BenchCommon {
  std::string to;
  std::string pattern = "mixed";
  double seconds = 3;
  std::string working_set = "32M";
  std::string xbzrle_cache = "64M";
  double connect_timeout_s = 10;
  void add_to(CLI::App* cmd);
  Status resolve(bench::BenchSettings& s) const;  // kInvalidArgument naming the option
};

// --queues, --batch-size, --codec (lists) and --zstd-level: the configurations to run.
struct BenchSweep {
  std::vector<uint32_t> queues{migration::default_queues()};
  std::vector<std::string> message_sizes{"256K"};
  std::vector<std::string> codecs{"auto"};  // what `send` uses unless told
  int zstd_level = 1;
  std::string cpus;  // --cpus LIST: the client's queue threads, as send's
  void add_to(CLI::App* cmd);
  // Every combination, codec-major then message size then queues.
  Result<std::vector<bench::BenchPoint>> points(const transport::BackendSettings& backend_settings,
                                                uint32_t page_size) const;
};

// "[3/9] queues=2 message=256 KiB codec=none  47%" on a terminal's stderr.
class PointProgress {
 public:
  PointProgress();
  void start(size_t index, size_t total, const bench::BenchPoint& p);
  void update(double fraction);
  void done();

 private:
  bool show_;
  std::string label_;
};

// `bench --raw` (bench_raw.cc): a dpdk:// port's raw ceiling, no protocol; the flags it takes.
struct RawBenchRun {
  bool server = false;
  std::string address;  // --listen (server) or --to
  double seconds = 3;
  double connect_timeout_s = 10;
  std::string frame_size;  // --frame-size; empty: the largest the port's MTU allows
  transport::BackendSettings settings;
  std::string json;  // --json FILE ('-' = stdout)
};
// Runs one side and prints its figures; the exit code (2: not dpdk://, or a usage error).
int run_raw_bench(const RawBenchRun& run, const std::atomic<bool>& stop);

}  // namespace ramshift::cli

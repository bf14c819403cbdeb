// `ramshift demo`: one command that shows the product working on one machine. It migrates a
// running synthetic guest from this process to a receiver process (`ramshift receive`, or a
// thread over loopback://) with a progress bar, and prints both reports: the destination
// checks the digest, resumes the guest, lets it run and checks every page again. With
// `--guest image` it moves a memory image instead and the two files are compared byte for
// byte. The orchestration is migration::run_local_pair (ramshift/migration/local_pair.h).
#include <fmt/format.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "progress_bar.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/local_pair.h"
#include "ramshift/transport/registry.h"

namespace ramshift::cli {
namespace {

struct DemoOptions {
  std::string guest = "synthetic:size=1G,dirty-rate=20M,pattern=mixed";
  std::string size = "256M";  // --guest image
  std::string pattern = "mixed";
  std::string transport = "auto";
  std::string mode = "precopy";
  uint32_t queues = migration::default_queues();
  std::string codec = "auto";
  double downtime_limit_ms = 100;
  std::string json;
  bool keep = false;
};

// The report as a table: one line per round (the whole report is in --json).
void print_rounds(const migration::MigrationReport& r) {
  if (r.rounds_detail.empty()) return;
  fmt::print(stderr,
             "round      pages   guest MiB    wire MiB       ms    MB/s  dirty after  expected "
             "downtime\n");
  for (const auto& d : r.rounds_detail)
    fmt::print(stderr, "{:5} {:10} {:11.1f} {:11.1f} {:8.0f} {:7.0f} {:9.1f} MiB {:14.1f} ms\n",
               d.round, d.pages, d.guest_bytes / 1048576.0, d.wire_bytes / 1048576.0, d.ms,
               d.ms > 0 ? d.guest_bytes / d.ms / 1000 : 0, d.dirty_bytes_after / 1048576.0,
               d.expected_downtime_ms);
}

// --transport to where the receiver listens: auto is rdma where this build has the backend
// and the host a device, else tcp; loopback is a thread of this process (empty listen).
struct Route {
  std::string transport;
  std::string listen;
};
Result<Route> choose_route(const std::string& requested) {
  if (requested == "loopback") return Route{"loopback", ""};
  if (requested == "tcp") return Route{"tcp", "tcp://127.0.0.1:0"};
  if (requested != "auto" && requested != "rdma")
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--transport {} is unknown (auto, rdma, tcp, loopback)", requested));
  auto addr = transport::device_address("rdma");
  if (addr) return Route{"rdma", fmt::format("rdma://{}:0", *addr)};
  if (requested == "rdma") return addr.status().with_context("--transport rdma");
  return Route{"tcp", "tcp://127.0.0.1:0"};
}

// A temporary directory for the images and the receiver's report, removed unless --keep.
struct WorkDir {
  WorkDir(std::string p, bool k) : path(std::move(p)), keep(k) {}
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  std::string path;
  bool keep;
  ~WorkDir() {
    std::error_code ec;
    if (!keep && !path.empty()) std::filesystem::remove_all(path, ec);
  }
};
Result<std::unique_ptr<WorkDir>> make_work_dir(bool keep) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ramshift-demo-XXXXXX";
  if (!mkdtemp(dir.data())) return errno_status(ErrorCode::kIo, "mkdtemp", errno);
  return std::make_unique<WorkDir>(dir, keep);
}

// The guest to migrate: a synthetic one that runs meanwhile, or (--guest image) a memory
// image written to `src` first.
Result<std::unique_ptr<guest::SourceGuest>> make_guest(const DemoOptions& o, const std::string& src,
                                                       uint32_t page_size) {
  if (o.guest != "image") {
    RS_ASSIGN_OR_RETURN(auto g, open_guest(o.guest, page_size));
    fmt::print(stderr, "ramshift demo: started a {}\n", g->describe());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let it dirty memory a while
    return g;
  }
  RS_ASSIGN_OR_RETURN(uint64_t size, parse_size(o.size));
  RS_ASSIGN_OR_RETURN(auto pattern, guest::parse_pattern(o.pattern));
  fmt::print(stderr, "ramshift demo: writing a {} {} memory image to {}\n", format_bytes(size),
             guest::pattern_name(pattern), src);
  RS_RETURN_IF_ERROR(write_image(src, size, pattern, 42, /*overwrite=*/true));
  return open_guest("file:" + src, page_size);
}

// Flags to the pair's config; files in `dir`. Over tcp or rdma the receiver is this binary's
// `receive`, in a process of its own.
Result<migration::LocalPairConfig> make_config(const DemoOptions& o, const Route& route,
                                               const std::string& dir) {
  migration::LocalPairConfig c;
  RS_ASSIGN_OR_RETURN(c.source.mode, migration::parse_migration_mode(o.mode));
  RS_ASSIGN_OR_RETURN(c.source.codec.mode, pipeline::parse_codec(o.codec));
  c.source.queues = o.queues;
  c.source.convergence.downtime_limit =
      std::chrono::milliseconds(static_cast<int64_t>(o.downtime_limit_ms));
  const bool image = o.guest == "image";
  const std::string dst = dir + "/destination.img";
  if (image) c.compare_images = migration::LocalPairConfig::ImagePair{dir + "/source.img", dst};
  if (route.listen.empty()) {
    c.in_process_uri = "loopback://demo";
    if (image) c.destination.output_path = dst;
    c.destination.resume_for = std::chrono::seconds(1);
    return c;
  }
  migration::ReceiverProcess rp;
  rp.report_path = dir + "/destination.json";
  rp.argv = {std::filesystem::read_symlink("/proc/self/exe").string(),
             "-q",
             "receive",
             "--listen",
             route.listen,
             "--once",
             "--json",
             rp.report_path,
             "--resume-seconds",
             "1"};
  if (image) rp.argv.insert(rp.argv.end(), {"--guest-out", dst});
  c.receiver_process = std::move(rp);
  return c;
}

// Both reports, then the verdict; the exit code.
int print_outcome(const migration::LocalPairReport& r, const std::string& json) {
  write_json(r.source, json);
  print_rounds(r.source);
  print_summary(r.source);
  if (r.live_guest && r.destination.resumed_verified.value_or(false))
    fmt::print(stderr,
               "ramshift demo: downtime {:.1f} ms over {} rounds; the guest resumed on the "
               "destination, made {} writes there, and every page verified\n",
               r.source.downtime_ms.value_or(0), r.source.rounds, r.destination.resumed_writes);
  if (!r.migrated()) {
    log::error("demo failed (receiver exit {})", r.receiver_exit);
    return 1;
  }
  if (!r.image_check) return fail_with(r.image_check);
  if (r.images_identical)
    fmt::print(stderr, "ramshift demo: independent check: destination image is {}\n",
               *r.images_identical ? "bit-identical to the source" : "DIFFERENT from the source");
  return r.verified() ? 0 : 1;
}

int run_demo(const DemoOptions& o) {
  auto route = choose_route(o.transport);
  if (!route) return fail_with(route.status());
  auto dir = make_work_dir(o.keep);
  if (!dir) return fail_with(dir.status());
  auto config = make_config(o, *route, (*dir)->path);
  if (!config) return fail_with(config.status());
  auto guest = make_guest(o, (*dir)->path + "/source.img", config->source.page_size);
  if (!guest) return fail_with(guest.status());
  auto on_started = [&](const migration::ReceiverStarted& rs) {
    if (rs.pid == 0) {
      fmt::print(stderr, "ramshift demo: in-process receiver on {}\n", rs.uri.to_string());
      return;
    }
    fmt::print(stderr,
               "ramshift demo: receiver process {} listening on {}; migrating over {}, {} "
               "queue(s), codec {}\n",
               rs.pid, rs.uri.to_string(), route->transport, o.queues, o.codec);
  };
  ProgressBar bar("demo", true);
  auto report = migration::run_local_pair(**guest, *config, on_started,
                                          [&](const migration::Progress& p) { bar.update(p); });
  bar.finish();
  if (!report) return fail_with(report.status());
  return print_outcome(*report, o.json);
}

}  // namespace

Runner add_demo(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo", "live-migrate a running synthetic guest between two local processes and verify it");
  cmd->add_option("--guest", o->guest, "synthetic:SPEC (see `send --help`), or `image`")
      ->capture_default_str();
  cmd->add_option("--size", o->size, "--guest image: image size")->capture_default_str();
  cmd->add_option("--pattern", o->pattern, "--guest image: zero|random|text|mixed")
      ->capture_default_str();
  cmd->add_option("--transport", o->transport,
                  "auto (rdma when built and a device exists, else tcp), tcp (two processes) or "
                  "loopback (one process)")
      ->capture_default_str();
  cmd->add_option("--mode", o->mode, "precopy|postcopy|hybrid (see `send --help`)")
      ->capture_default_str();
  cmd->add_option("--queues", o->queues, "data queues")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--codec", o->codec, "auto|none|zero|xbzrle|zstd|xbzrle+zstd")
      ->capture_default_str();
  cmd->add_option("--downtime-limit", o->downtime_limit_ms, "ms")->capture_default_str();
  cmd->add_option("--json", o->json, "write the source's report as JSON to FILE ('-' = stdout)");
  cmd->add_flag("--keep", o->keep, "keep the temporary files");
  return [o]() -> int { return run_demo(*o); };
}

}  // namespace ramshift::cli

// `ramshift demo`: one command that shows the product working on one machine. It starts a
// receiver process, migrates a running synthetic guest to it (this process is the source)
// with a progress bar, and prints both reports: the destination checks the digest, resumes
// the guest, lets it run and checks every page again. With `--guest image` it moves a memory
// image instead and compares the two files byte for byte itself.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "commands.h"
#include "progress_bar.h"
#include "ramshift/base/log.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/base/units.h"
#include "ramshift/guest/image.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"

extern char** environ;

namespace ramshift::cli {
namespace {

struct DemoOptions {
  std::string guest = "synthetic:size=1G,dirty-rate=20M,pattern=mixed";
  std::string size = "256M";  // --guest image
  std::string pattern = "mixed";
  std::string transport = "auto";
  std::string mode = "precopy";
  uint32_t queues = 2;
  std::string codec = "auto";
  double downtime_limit_ms = 100;
  std::string json;
  bool keep = false;
};

// Starts `ramshift receive` as a child; returns its pid and the URI it listens on.
Result<std::pair<pid_t, std::string>> spawn_receiver(const std::string& listen,
                                                     const std::string& out_path,
                                                     const std::string& json) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno_status(ErrorCode::kIo, "pipe", errno);
  UniqueFd rd(fds[0]), wr(fds[1]);
  std::string self = std::filesystem::read_symlink("/proc/self/exe");
  std::vector<std::string> args = {self,     "-q",     "receive", "--listen",         listen,
                                   "--once", "--json", json,      "--resume-seconds", "1"};
  if (!out_path.empty()) {
    args.push_back("--guest-out");
    args.push_back(out_path);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, self.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return errno_status(ErrorCode::kIo, "cannot start the receiver process", rc);
  wr.reset();
  std::string line;
  char c;
  while (line.size() < 256 && ::read(rd.get(), &c, 1) == 1 && c != '\n') line.push_back(c);
  const std::string prefix = "listening on ";
  if (line.rfind(prefix, 0) != 0) {
    waitpid(pid, nullptr, 0);
    return Status(ErrorCode::kIo, "the receiver process did not start listening");
  }
  return std::make_pair(pid, line.substr(prefix.size()));
}

// Independent end-to-end check: the two files are byte-identical.
Result<bool> files_identical(const std::string& a, const std::string& b) {
  UniqueFd fa(::open(a.c_str(), O_RDONLY | O_CLOEXEC)), fb(::open(b.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fa.valid() || !fb.valid())
    return Status(ErrorCode::kIo, fmt::format("cannot open {} or {}", a, b));
  struct stat sa {
  }, sb{};
  fstat(fa.get(), &sa);
  fstat(fb.get(), &sb);
  if (sa.st_size != sb.st_size) return false;
  auto ma = MappedMemory::map_file(fa.get(), sa.st_size, false, a);
  auto mb = MappedMemory::map_file(fb.get(), sb.st_size, false, b);
  if (!ma || !mb) return Status(ErrorCode::kIo, "cannot map the images to compare them");
  return std::memcmp(ma->bytes().data(), mb->bytes().data(), sa.st_size) == 0;
}

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

int run_demo(const DemoOptions& o) {
  migration::SourceConfig config;
  auto codec = pipeline::parse_codec(o.codec);
  if (!codec) return fail_with(codec.status());
  config.codec.mode = *codec;
  config.queues = o.queues;
  config.convergence.downtime_limit =
      std::chrono::milliseconds(static_cast<int64_t>(o.downtime_limit_ms));
  if (o.mode != "precopy")
    return fail_with(Status(ErrorCode::kInvalidArgument,
                            fmt::format("--mode {} is not available yet (precopy)", o.mode)));
  if (o.transport != "auto" && o.transport != "tcp" && o.transport != "loopback" &&
      o.transport != "rdma")
    return fail_with(
        Status(ErrorCode::kInvalidArgument,
               fmt::format("--transport {} is unknown (auto, rdma, tcp, loopback)", o.transport)));
  // auto: rdma where this build has the backend and the host a device, else tcp.
  std::string transport = o.transport;
  std::string listen = "tcp://127.0.0.1:0";
  if (transport == "auto" || transport == "rdma") {
    auto addr = transport::rdma_device_address();
    if (addr) {
      transport = "rdma";
      listen = fmt::format("rdma://{}:0", *addr);
    } else if (transport == "rdma") {
      return fail_with(addr.status().with_context("--transport rdma"));
    } else {
      transport = "tcp";
    }
  }
  const bool two_processes = transport != "loopback";  // a receiver process (tcp or rdma)

  const char* tmp = std::getenv("TMPDIR");
  std::string dir_template = std::string(tmp && *tmp ? tmp : "/tmp") + "/ramshift-demo-XXXXXX";
  if (!mkdtemp(dir_template.data()))
    return fail_with(errno_status(ErrorCode::kIo, "mkdtemp", errno));
  const std::string dir = dir_template;
  const std::string src = dir + "/source.img", dst = dir + "/destination.img",
                    djson = dir + "/destination.json";
  struct Cleanup {
    std::string dir;
    bool keep;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir, o.keep};

  const bool image = o.guest == "image";
  std::unique_ptr<guest::SourceGuest> source;
  if (image) {
    auto size = parse_size(o.size);
    if (!size) return fail_with(size.status());
    auto pattern = guest::parse_pattern(o.pattern);
    if (!pattern) return fail_with(pattern.status());
    fmt::print(stderr, "ramshift demo: writing a {} {} memory image to {}\n", format_bytes(*size),
               guest::pattern_name(*pattern), src);
    if (Status s = write_image(src, *size, *pattern, 42); !s) return fail_with(s);
    auto g = open_guest("file:" + src, config.page_size);
    if (!g) return fail_with(g.status());
    source = std::move(g).value();
  } else {
    auto g = open_guest(o.guest, config.page_size);
    if (!g) return fail_with(g.status());
    source = std::move(g).value();
    fmt::print(stderr, "ramshift demo: started a {}\n", source->describe());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let it dirty memory a while
  }

  migration::MigrationReport report, dest;
  int receiver_exit = 0;
  if (two_processes) {
    auto child = spawn_receiver(listen, image ? dst : "", djson);
    if (!child) return fail_with(child.status());
    auto [pid, uri_text] = *child;
    fmt::print(stderr,
               "ramshift demo: receiver process {} listening on {}; migrating over {}, {} "
               "queue(s), codec {}\n",
               pid, uri_text, transport, config.queues, o.codec);
    config.to = transport::parse_uri(uri_text).value();
    ProgressBar bar("demo", true);
    report = migration::run_source(*source, config,
                                   [&](const migration::Progress& p) { bar.update(p); });
    bar.finish();
    int status = 0;
    waitpid(pid, &status, 0);
    receiver_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  } else {
    config.to = transport::parse_uri("loopback://demo").value();
    auto listener = transport::listen(config.to);
    if (!listener) return fail_with(listener.status());
    std::thread receiver([&] {
      auto conn = (*listener)->accept(std::chrono::seconds(30));
      if (!conn) return;
      migration::DestinationConfig dc;
      if (image) dc.output_path = dst;
      dc.resume_for = std::chrono::seconds(1);
      dest = migration::run_destination(std::move(conn).value(), dc);
    });
    fmt::print(stderr, "ramshift demo: in-process receiver on loopback://demo\n");
    ProgressBar bar("demo", true);
    report = migration::run_source(*source, config,
                                   [&](const migration::Progress& p) { bar.update(p); });
    bar.finish();
    receiver.join();
    receiver_exit = dest.completed ? 0 : 1;
  }
  write_json(report, o.json);
  print_rounds(report);
  print_summary(report);
  bool resumed_ok = true;
  if (!image) {
    std::string dest_json;
    if (two_processes) {
      std::ifstream in(djson);
      std::stringstream ss;
      ss << in.rdbuf();
      dest_json = ss.str();
    } else {
      dest_json = dest.to_json();
    }
    auto j = nlohmann::json::parse(dest_json, nullptr, false);
    resumed_ok = !j.is_discarded() && j.contains("resumed") && j["resumed"]["verified"] == true;
    if (resumed_ok)
      fmt::print(stderr,
                 "ramshift demo: downtime {:.1f} ms over {} rounds; the guest resumed on the "
                 "destination, made {} writes there, and every page verified\n",
                 report.downtime_ms.value_or(0), report.rounds,
                 j["resumed"]["writes"].get<uint64_t>());
  }
  if (!report.completed || receiver_exit != 0 || !resumed_ok) {
    log::error("demo failed (receiver exit {})", receiver_exit);
    return 1;
  }
  if (image) {
    auto same = files_identical(src, dst);
    if (!same) return fail_with(same.status());
    fmt::print(stderr, "ramshift demo: independent check: destination image is {}\n",
               *same ? "bit-identical to the source" : "DIFFERENT from the source");
    return *same ? 0 : 1;
  }
  return 0;
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
  cmd->add_option("--mode", o->mode, "precopy")->capture_default_str();
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

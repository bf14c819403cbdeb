#include "ramshift/migration/local_pair.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"
#include "ramshift/transport/transport.h"

extern char** environ;

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

// How long the destination's listener waits for the source, in a thread.
constexpr auto kAcceptTimeout = 30s;
// After a failed source, how long a receiver process gets to notice and exit by itself.
constexpr auto kReceiverGrace = 10s;

// A started receiver process. Destroying it before wait() stops it (SIGTERM) and reaps it,
// so an early return never leaves a receiver listening.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, 0)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Waits for the exit: forever (nullopt), or `grace` and then stops it (SIGTERM). Returns
  // the exit code, or 128 + the signal that ended it.
  int wait(std::optional<std::chrono::milliseconds> grace) {
    int status = 0;
    pid_t got = 0;
    if (grace) {
      const auto deadline = std::chrono::steady_clock::now() + *grace;
      while ((got = ::waitpid(pid_, &status, WNOHANG)) == 0 &&
             std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(50ms);
      if (got == 0) {
        log::warn("the receiver process {} is still running; stopping it", pid_);
        ::kill(pid_, SIGTERM);
      }
    }
    if (got == 0) ::waitpid(pid_, &status, 0);
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_;
};

// Starts the receiver process and reads the URI it listens on from its first stdout line.
Result<std::pair<Child, transport::Uri>> spawn_receiver(const ReceiverProcess& rp) {
  if (rp.argv.empty()) return Status(ErrorCode::kInvalidArgument, "no receiver program given");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno_status(ErrorCode::kIo, "pipe", errno);
  UniqueFd rd(fds[0]), wr(fds[1]);
  std::vector<std::string> args = rp.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return errno_status(ErrorCode::kIo, "cannot start the receiver process", rc);
  Child child(pid);
  wr.reset();  // so a receiver that dies unannounced ends the read below
  std::string line;
  char c;
  while (line.size() < 256 && ::read(rd.get(), &c, 1) == 1 && c != '\n') line.push_back(c);
  const std::string prefix = "listening on ";
  if (line.rfind(prefix, 0) != 0) {
    child.wait(std::nullopt);
    return Status(ErrorCode::kIo, "the receiver process did not start listening");
  }
  RS_ASSIGN_OR_RETURN(auto uri, transport::parse_uri(line.substr(prefix.size())));
  return std::make_pair(std::move(child), uri);
}

// What the pair needs of a receiver's JSON report (MigrationReport::to_json's keys); a
// missing or unreadable file leaves the report failed.
MigrationReport read_report(const std::string& path) {
  MigrationReport r;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    r.error = Status(ErrorCode::kIo, fmt::format("no report from the receiver in {}", path));
    return r;
  }
  r.role = j.value("role", "destination");
  r.completed = j.value("status", "") == "completed";
  r.verified = j.value("verified", false);
  r.total_ms = j.value("total_ms", 0.0);
  if (j.contains("resumed") && j["resumed"].is_object()) {
    r.resumed_verified = j["resumed"].value("verified", false);
    r.resumed_writes = j["resumed"].value("writes", uint64_t{0});
  }
  if (j.contains("error") && j["error"].is_string())
    r.error = Status(ErrorCode::kIo, j["error"].get<std::string>());
  return r;
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

Result<LocalPairReport> run_with_process(guest::SourceGuest& guest, const LocalPairConfig& c,
                                         const ReceiverStartedFn& on_started,
                                         const ProgressFn& progress) {
  RS_ASSIGN_OR_RETURN(auto started, spawn_receiver(*c.receiver_process));
  auto& [child, uri] = started;
  if (on_started) on_started({child.pid(), uri});
  SourceConfig sc = c.source;
  sc.to = uri;
  LocalPairReport r;
  r.source = run_source(guest, sc, progress);
  r.receiver_exit = child.wait(
      r.source.completed ? std::nullopt : std::optional<std::chrono::milliseconds>(kReceiverGrace));
  r.destination = read_report(c.receiver_process->report_path);
  return r;
}

Result<LocalPairReport> run_in_process(guest::SourceGuest& guest, const LocalPairConfig& c,
                                       const ReceiverStartedFn& on_started,
                                       const ProgressFn& progress) {
  SourceConfig sc = c.source;
  RS_ASSIGN_OR_RETURN(sc.to, transport::parse_uri(c.in_process_uri));
  RS_ASSIGN_OR_RETURN(auto listener, transport::listen(sc.to));
  LocalPairReport r;
  std::thread receiver([&] {
    auto conn = listener->accept(kAcceptTimeout);
    if (!conn) {
      r.destination.error = conn.status();
      return;
    }
    r.destination = run_destination(std::move(conn).value(), c.destination);
  });
  if (on_started) on_started({0, sc.to});
  r.source = run_source(guest, sc, progress);
  receiver.join();
  r.receiver_exit = r.destination.completed ? 0 : 1;
  return r;
}

}  // namespace

Result<LocalPairReport> run_local_pair(guest::SourceGuest& guest, const LocalPairConfig& config,
                                       const ReceiverStartedFn& on_receiver_started,
                                       const ProgressFn& progress) {
  RS_ASSIGN_OR_RETURN(auto r, config.receiver_process
                                  ? run_with_process(guest, config, on_receiver_started, progress)
                                  : run_in_process(guest, config, on_receiver_started, progress));
  r.live_guest = !guest.immutable();
  if (r.migrated() && config.compare_images) {
    auto same = files_identical(config.compare_images->source_path,
                                config.compare_images->destination_path);
    if (same)
      r.images_identical = *same;
    else
      r.image_check = same.status();
  }
  return r;
}

}  // namespace ramshift::migration

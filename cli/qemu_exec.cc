// `ramshift qemu-exec [OPTIONS] -- QEMU ARGS...`: runs QEMU with the in-process library
// (libramshift_qemu.so) preloaded and its settings in the environment, by exec: QEMU keeps
// this process's pid, stdio and exit status, so it can stand in for QEMU anywhere (a libvirt
// <emulator> wrapper, `-help` probes, scripts).
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::cli {
namespace {

constexpr const char* kLibraryName = "libramshift_qemu.so";

// The library beside this binary, or in ../lib (an installed tree, or the build tree).
std::string find_library() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  for (auto dir : {self.parent_path(), self.parent_path().parent_path() / "lib"}) {
    auto p = dir / kLibraryName;
    if (std::filesystem::exists(p, ec)) return p.string();
  }
  return {};
}

}  // namespace

Runner add_qemu_exec(CLI::App& app) {
  struct Options {
    std::string transport = "rdma";
    std::string stats;
    std::string library;
    std::string tls_dir, tls_psk, tls_authz;
    bool memory_windows = true;
    double peer_timeout_s = 5;  // migration::SourceConfig::peer_timeout says why
    std::vector<std::string> command;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "qemu-exec",
      "run QEMU with ramshift's in-process library: multifd pages of a tcp: migration go by "
      "RDMA when both QEMUs run under qemu-exec (else plain TCP, as without it)");
  cmd->add_option("--transport", o->transport,
                  "rdma: move multifd pages by RDMA READ when the peer can; tcp: touch nothing")
      ->capture_default_str()
      ->check(CLI::IsMember({"rdma", "tcp"}));
  cmd->add_option("--stats", o->stats,
                  "write the library's JSON stats (pages and bytes by RDMA, bytes on the "
                  "sockets, registration, per channel) to FILE");
  cmd->add_option("--library", o->library,
                  "path of libramshift_qemu.so (default: beside "
                  "this binary, or in ../lib)");
  // The READ connection authenticates as every other ramshift connection does, both sides with
  // the same flags (the source connects: client-*.pem; the destination: server-*.pem).
  add_tls_options(cmd, o->tls_dir, o->tls_psk, o->tls_authz);
  cmd->add_option("--rdma-memory-windows", o->memory_windows,
                  "source: true: the destination's keys to guest memory are memory windows bound "
                  "to its READ connection's queue pair, where the device has them; false: the "
                  "memory regions' own keys")
      ->capture_default_str();
  cmd->add_option("--peer-timeout", o->peer_timeout_s,
                  "source: seconds the guest memory stays open to the destination's READs after "
                  "QEMU closed a channel, unless the destination says it is done first")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("command", o->command, "QEMU and its arguments, after --")->required();
  return [o]() -> int {
    std::string lib = o->library.empty() ? find_library() : o->library;
    if (lib.empty() || access(lib.c_str(), R_OK) != 0)
      return fail_with(Status(ErrorCode::kNotFound,
                              fmt::format("{} not found{}; give its path with --library",
                                          lib.empty() ? kLibraryName : lib,
                                          lib.empty() ? " beside ramshift or in ../lib" : "")));
    lib = std::filesystem::absolute(lib).string();
    // Checked here, so that a typo fails before QEMU starts rather than at the migration.
    transport::BackendSettings tls;
    if (!o->tls_dir.empty()) tls.set("tls-dir", std::filesystem::absolute(o->tls_dir).string());
    if (!o->tls_psk.empty()) tls.set("tls-psk", std::filesystem::absolute(o->tls_psk).string());
    if (!o->tls_authz.empty()) {
      std::error_code ec;
      bool file = std::filesystem::is_regular_file(o->tls_authz, ec);
      tls.set("tls-authz", file ? std::filesystem::absolute(o->tls_authz).string() : o->tls_authz);
    }
    if (Status st = transport::check_security_settings(tls); !st) return fail_with(st);
    for (auto [name, env] : {std::pair{"tls-dir", "RAMSHIFT_QEMU_TLS_DIR"},
                             std::pair{"tls-psk", "RAMSHIFT_QEMU_TLS_PSK"},
                             std::pair{"tls-authz", "RAMSHIFT_QEMU_TLS_AUTHZ"}}) {
      auto v = tls.find(name);
      if (v)
        setenv(env, std::string(*v).c_str(), 1);
      else
        unsetenv(env);
    }
    const char* old = std::getenv("LD_PRELOAD");
    std::string preload = old && *old ? lib + ":" + old : lib;
    setenv("LD_PRELOAD", preload.c_str(), 1);
    setenv("RAMSHIFT_QEMU_TRANSPORT", o->transport.c_str(), 1);
    setenv("RAMSHIFT_QEMU_MEMORY_WINDOWS", o->memory_windows ? "true" : "false", 1);
    setenv("RAMSHIFT_QEMU_PEER_TIMEOUT", std::to_string(o->peer_timeout_s).c_str(), 1);
    if (!o->stats.empty())
      setenv("RAMSHIFT_QEMU_STATS", std::filesystem::absolute(o->stats).c_str(), 1);
    // Guest memory is registered whole: take the hard memlock limit as the soft one (the
    // library says so, with the numbers, when even that is too low).
    rlimit lim{};
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      setrlimit(RLIMIT_MEMLOCK, &lim);
    }
    std::vector<char*> argv;
    for (auto& a : o->command) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    return fail_with(errno_status(ErrorCode::kNotFound, "cannot run " + o->command[0], errno));
  };
}

}  // namespace ramshift::cli

// The `ramshift` subcommands. Each registers its options on a CLI11 app and returns the
// process exit code: 0 completed and verified, 1 failed (the source is unchanged),
// 2 usage or setup error (bad URI, codec, file, port, size, disk full).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/guest/guest.h"
#include "ramshift/guest/pattern.h"
#include "ramshift/migration/report.h"
#include "ramshift/transport/settings.h"
#include "ramshift/transport/transport.h"

namespace ramshift::cli {

using Runner = std::function<int()>;

Runner add_send(CLI::App& app);
Runner add_receive(CLI::App& app);
Runner add_demo(CLI::App& app);
Runner add_make_image(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_tune(CLI::App& app);
Runner add_doctor(CLI::App& app);
#ifdef RAMSHIFT_HAVE_QEMU_BRIDGE
Runner add_qemu_bridge(CLI::App& app);
Runner add_qemu_migrate(CLI::App& app);
#endif
#ifdef RAMSHIFT_HAVE_QEMU_PRELOAD
Runner add_qemu_exec(CLI::App& app);
#endif

// Shared helpers.
int exit_code_for(const Status& s);
// Writes a JSON document to `path` ("-" = stdout, on every command); failures are reported,
// not fatal.
void write_json_text(const std::string& json, const std::string& path);
void write_json(const migration::MigrationReport& report, const std::string& path);
// Human summary of a report on stderr (one or two lines).
void print_summary(const migration::MigrationReport& report);
// The backends' own flags (--rdma-*, --dpdk-*) shared by send, receive, bench, tune and the
// bridges (documented in docs/user-guide.md). rdma://: the ring options size the ring the command's
// own side receives into, so `send` defaults to a reply ring: BackendFlags{.slot_size = "64K"}. The
// defaults are the rdma backend's own (rdma/src/rdma_tuning.h); the flags only pass them on.
struct BackendFlags {
  uint32_t ring_slots = 8;
  std::string slot_size = "512K";
  uint32_t send_queue_depth = 128;
  uint32_t signal_every = 16;
  uint32_t max_inline = 64;
  uint32_t ack_timeout = 0;
  bool busy_poll = false;
  bool memory_windows = true;
  // Datacenter RoCE placement, passed on only when given (rdma/src/rdma_tuning.h).
  int tos = -1;
  int gid_index = -1;
  std::string rdma_device, rdma_source_ip;
  // dpdk:// settings, passed on only when given (cli/common.cc; dpdk/README.md).
  std::string dpdk_eal, dpdk_local_ip, dpdk_peer_mac;
  uint32_t dpdk_port = 0;
  // --tls-*: authenticated tcp:// (encrypted) and rdma:// queues (security/, docs/security.md),
  // passed on only when given.
  std::string tls_dir, tls_psk, tls_authz;
  bool tls_ktls = true;
  bool encrypt = false;  // --encrypt: rdma:// payloads sealed with keys from the handshake
  // Registers --rdma-* (--dpdk-*, --tls-*) options on `cmd`; resolve() turns them into the
  // transport's generic settings, each named as its flag, checked by the backend that owns them
  // (kInvalidArgument).
  void add_to(CLI::App* cmd);
  Result<transport::BackendSettings> resolve() const;
};
// --tls-dir, --tls-psk and --tls-authz on `cmd` (BackendFlags and doctor).
inline constexpr const char* kTlsGroup = "tcp:// and rdma:// security (docs/security.md)";
void add_tls_options(CLI::App* cmd, std::string& dir, std::string& psk, std::string& authz);
// --cpus LIST: the CPUs the queue threads run on (ramshift/base/cpu_affinity.h).
void add_cpus_option(CLI::App* cmd, std::string& list);
// Prints "ramshift: error: ..." and returns exit_code_for(s).
int fail_with(const Status& s);

}  // namespace ramshift::cli

namespace ramshift::cli {
// Opens `--guest` (file:PATH or synthetic:SPEC).
Result<std::unique_ptr<guest::SourceGuest>> open_guest(const std::string& spec, uint32_t page_size);
// Writes a `size`-byte image of `pattern` to `path` (make-image and demo).
Status write_image(const std::string& path, uint64_t size, guest::Pattern pattern, uint64_t seed,
                   bool overwrite);
// Writes guest memory, region after region, to `path` (`--dump-guest`).
Status write_memory_dump(const std::string& path,
                         const std::vector<std::span<const std::byte>>& regions);
}  // namespace ramshift::cli
